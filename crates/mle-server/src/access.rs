//! Who may do what. Principals hold tokens: the server admin (the token in
//! `<data-dir>/token`: every project, and the tokens themselves) and named principals kept in
//! the store (only their token's SHA-256), each with a role in some projects. Roles follow
//! Cloud ML Engine's IAM roles, and permissions keep IAM's names (`ml.jobs.create`, ...), with
//! one of mle's own, `ml.versions.setDefault`, which only admins hold.
//!
//! [`need`] is THE table of what each route needs, by method and path; the app's middleware
//! checks it before any handler runs, so a denied request learns nothing about the resource.

use axum::http::Method;
use sha2::{Digest, Sha256};

/// A role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads jobs, models, versions, operations and logs.
    Viewer,
    /// Reads models and versions, and predicts.
    ModelUser,
    /// Viewer and model user, and submits and cancels jobs, creates models and versions,
    /// patches labels and descriptions.
    Developer,
    /// Everything in its projects, deletes and `setDefault` included.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::ModelUser, Role::Developer, Role::Admin];

    /// The name used on the command line, in the store and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::ModelUser => "modelUser",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Whether the role holds `p`.
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        let read = matches!(
            p,
            JobsGet
                | JobsList
                | ModelsGet
                | ModelsList
                | VersionsGet
                | VersionsList
                | OperationsGet
                | OperationsList
        );
        let model_use = matches!(
            p,
            ModelsGet | ModelsList | VersionsGet | VersionsList | ModelsPredict | VersionsPredict
        );
        let develop = matches!(
            p,
            JobsCreate
                | JobsCancel
                | JobsUpdate
                | ModelsCreate
                | ModelsUpdate
                | VersionsCreate
                | VersionsUpdate
        );
        match self {
            Role::Viewer => read,
            Role::ModelUser => model_use,
            Role::Developer => read || model_use || develop,
            Role::Admin => true,
        }
    }
}

/// Declares [`Permission`], [`Permission::ALL`] and [`Permission::name`] from one list of
/// variants and their IAM names.
macro_rules! permissions {
    ($($variant:ident => $name:literal,)*) => {
        /// A permission, by its IAM name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Permission {
            $(#[doc = $name] $variant,)*
        }

        impl Permission {
            /// Every permission.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// Its IAM name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }
        }
    };
}

permissions! {
    JobsGet => "ml.jobs.get",
    JobsList => "ml.jobs.list",
    JobsCreate => "ml.jobs.create",
    JobsCancel => "ml.jobs.cancel",
    JobsUpdate => "ml.jobs.update",
    ModelsGet => "ml.models.get",
    ModelsList => "ml.models.list",
    ModelsCreate => "ml.models.create",
    ModelsUpdate => "ml.models.update",
    ModelsDelete => "ml.models.delete",
    ModelsPredict => "ml.models.predict",
    VersionsGet => "ml.versions.get",
    VersionsList => "ml.versions.list",
    VersionsCreate => "ml.versions.create",
    VersionsUpdate => "ml.versions.update",
    VersionsDelete => "ml.versions.delete",
    VersionsPredict => "ml.versions.predict",
    VersionsSetDefault => "ml.versions.setDefault",
    OperationsGet => "ml.operations.get",
    OperationsList => "ml.operations.list",
}

impl Permission {
    /// The permission named `s`.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.iter().copied().find(|p| p.name() == s)
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The holder of `<data-dir>/token`.
    ServerAdmin,
    /// A named token.
    Named {
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
        /// The projects it holds the role in.
        projects: Vec<String>,
    },
}

impl Principal {
    /// Its name, as the audit log writes it (never the token).
    pub fn name(&self) -> &str {
        match self {
            Principal::ServerAdmin => "server-admin",
            Principal::Named { name, .. } => name,
        }
    }

    /// Whether it holds `p` in `project`.
    pub fn may(&self, project: &str, p: Permission) -> bool {
        match self {
            Principal::ServerAdmin => true,
            Principal::Named { role, projects, .. } => {
                projects.iter().any(|x| x == project) && role.grants(p)
            }
        }
    }

    /// Whether it may make a request that needs `need`.
    pub fn allowed(&self, need: &Need) -> bool {
        match need {
            Need::Authenticated => true,
            Need::ServerAdmin => *self == Principal::ServerAdmin,
            Need::Permission {
                project,
                permission,
            } => self.may(project, *permission),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any valid token (the API document, `testIamPermissions`).
    Authenticated,
    /// The server admin's token (tokens, metrics, routes not in the table).
    ServerAdmin,
    /// A permission in a project.
    Permission {
        /// The project.
        project: String,
        /// The permission.
        permission: Permission,
    },
}

impl Need {
    /// The project it concerns, if any.
    pub fn project(&self) -> &str {
        match self {
            Need::Permission { project, .. } => project,
            _ => "",
        }
    }
}

/// The project KServe V1 and V2 requests address.
pub const DEFAULT_PROJECT: &str = "default";

/// `%XX` escapes decoded (lossily), as the router decodes path parameters.
fn decode(segment: &str) -> String {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The action a last segment names (`j1:cancel` → `cancel`), if any.
fn action(segment: &str) -> Option<&str> {
    segment.rsplit_once(':').map(|(_, a)| a)
}

/// Whether a request changes something (and so goes into the audit log): every method but
/// GET and HEAD, except the POSTs that only compute (predictions, `testIamPermissions`).
pub fn mutating(method: &Method, path: &str) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return false;
    }
    let last = path.rsplit('/').next().map(decode).unwrap_or_default();
    !(matches!(action(&last), Some("predict" | "testIamPermissions")) || last == "infer")
}

/// The permission a request under `/v1/projects/{project}/` needs: `rest` are the segments
/// after the project, `act` the action of the last one. `None` for a method or action the
/// route lacks (the router refuses it after this check).
fn project_permission(method: &str, rest: &[&str], act: Option<&str>) -> Option<Permission> {
    use Permission::*;
    Some(match (method, rest) {
        ("GET", ["jobs"]) => JobsList,
        ("POST", ["jobs"]) => JobsCreate,
        ("GET", ["jobs", _] | ["jobs", _, "logs" | "metrics"] | ["jobs", _, "logs", "stream"]) => {
            JobsGet
        }
        ("POST", ["jobs", _]) if act == Some("cancel") => JobsCancel,
        ("PATCH", ["jobs", _]) => JobsUpdate,
        ("GET", ["models"]) => ModelsList,
        ("POST", ["models"]) => ModelsCreate,
        ("GET", ["models", _]) => ModelsGet,
        ("PATCH", ["models", _]) => ModelsUpdate,
        ("DELETE", ["models", _]) => ModelsDelete,
        ("POST", ["models", _]) if act == Some("predict") => ModelsPredict,
        ("GET", ["models", _, "versions"]) => VersionsList,
        ("POST", ["models", _, "versions"]) => VersionsCreate,
        ("GET", ["models", _, "versions", _]) => VersionsGet,
        ("PATCH", ["models", _, "versions", _]) => VersionsUpdate,
        ("DELETE", ["models", _, "versions", _]) => VersionsDelete,
        ("POST", ["models", _, "versions", _]) if act == Some("setDefault") => VersionsSetDefault,
        ("POST", ["models", _, "versions", _]) if act == Some("predict") => VersionsPredict,
        ("GET", ["operations"]) => OperationsList,
        ("GET", ["operations", _]) => OperationsGet,
        _ => return None,
    })
}

/// What the request `method path` needs: THE table of the API's routes and their
/// permissions. A route missing from it needs the server admin.
pub fn need(method: &Method, path: &str) -> Need {
    use Permission::*;
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let on = |project: &str, permission| Need::Permission {
        project: project.to_string(),
        permission,
    };
    let act = s.last().and_then(|l| action(l));
    if act == Some("testIamPermissions") {
        return Need::Authenticated;
    }
    match (m, s.as_slice()) {
        ("GET", ["openapi.json"] | ["v1", "principal"]) => Need::Authenticated,
        // A method or action a project's route lacks needs no more than reading the project
        // (the router then answers 404 or 405).
        (_, ["v1", "projects", project, rest @ ..]) => {
            on(project, project_permission(m, rest, act).unwrap_or(JobsGet))
        }
        ("GET", ["v1", "models", _]) => on(DEFAULT_PROJECT, ModelsGet),
        ("POST", ["v1", "models", _]) => on(DEFAULT_PROJECT, ModelsPredict),
        ("GET", ["v2", "models", _] | ["v2", "models", _, "ready"]) => {
            on(DEFAULT_PROJECT, ModelsGet)
        }
        ("POST", ["v2", "models", _, "infer"]) => on(DEFAULT_PROJECT, ModelsPredict),
        ("POST", ["v2", "models", _, "versions", _, "infer"]) => {
            on(DEFAULT_PROJECT, VersionsPredict)
        }
        _ => Need::ServerAdmin,
    }
}

/// The SHA-256 of a token, hex: what the store keeps.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token: 32 bytes from the OS generator, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality: a comparison must not tell how much of a token matched.
pub fn same_token(given: &str, want: &str) -> bool {
    given.len() == want.len()
        && given
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_project_and_the_permission() {
        let n = |m: Method, p: &str| need(&m, p);
        let on = |project: &str, permission| Need::Permission {
            project: project.into(),
            permission,
        };
        assert_eq!(
            n(Method::POST, "/v1/projects/p/jobs"),
            on("p", Permission::JobsCreate)
        );
        assert_eq!(
            n(Method::POST, "/v1/projects/p/jobs/j1%3Acancel"),
            on("p", Permission::JobsCancel)
        );
        assert_eq!(
            n(
                Method::POST,
                "/v1/projects/q/models/m/versions/v:setDefault"
            ),
            on("q", Permission::VersionsSetDefault)
        );
        assert_eq!(
            n(Method::POST, "/v2/models/m/versions/v/infer"),
            on("default", Permission::VersionsPredict)
        );
        assert_eq!(
            n(Method::POST, "/v1/projects/p/models/m:testIamPermissions"),
            Need::Authenticated
        );
        assert_eq!(n(Method::GET, "/metrics"), Need::ServerAdmin);
        assert_eq!(n(Method::GET, "/v1/principal"), Need::Authenticated);
        assert_eq!(
            n(Method::GET, "/v1/projects/p/jobs/j/logs/stream"),
            on("p", Permission::JobsGet)
        );
        assert_eq!(
            n(Method::GET, "/v1/projects/p/jobs/j/metrics"),
            on("p", Permission::JobsGet)
        );
        assert_eq!(n(Method::GET, "/v1/tokens"), Need::ServerAdmin);
        // A project whose name is escaped is the decoded name.
        assert_eq!(
            n(Method::GET, "/v1/projects/a%2Db/jobs"),
            on("a-b", Permission::JobsList)
        );
    }

    #[test]
    fn roles_hold_what_cmle_roles_hold() {
        use Permission::*;
        let names = |r: Role| -> Vec<&str> {
            Permission::ALL
                .iter()
                .copied()
                .filter(|p| r.grants(*p))
                .map(Permission::name)
                .collect()
        };
        assert!(!Role::Viewer.grants(JobsCreate) && Role::Viewer.grants(OperationsList));
        assert!(!Role::Viewer.grants(ModelsPredict));
        assert_eq!(names(Role::ModelUser).len(), 6);
        assert!(!Role::ModelUser.grants(JobsGet));
        assert!(Role::Developer.grants(JobsCancel) && Role::Developer.grants(VersionsPredict));
        assert!(
            !Role::Developer.grants(ModelsDelete) && !Role::Developer.grants(VersionsSetDefault)
        );
        assert_eq!(names(Role::Admin).len(), Permission::ALL.len());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(*p));
        }
        let dev = Principal::Named {
            name: "d".into(),
            role: Role::Developer,
            projects: vec!["p".into()],
        };
        assert!(dev.may("p", JobsCreate) && !dev.may("q", JobsGet));
    }

    #[test]
    fn tokens_are_hashed_and_compared_in_constant_time() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token());
        assert_eq!(hash(&t).len(), 64);
        assert_ne!(hash(&t), t);
        assert!(same_token(&t, &t) && !same_token(&t, &t[1..]) && !same_token("a", "b"));
    }
}
