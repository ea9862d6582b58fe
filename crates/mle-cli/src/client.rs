//! The REST client of `mle jobs`, `mle models`, `mle versions` and `mle predict`: how to reach
//! the server (`--server`, `--token`, `--project`), typed requests built from `mle-api`, the
//! server's refusals as errors, and the output formats of read commands.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use crate::data_dir::default_data_dir;

/// How to reach the server.
#[derive(Args, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        env = "MLE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Bearer token [default: the token file in $MLE_DATA_DIR or ~/.mle].
    #[arg(long, env = "MLE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Project.
    #[arg(long, env = "MLE_PROJECT", default_value = "default", global = true)]
    project: String,
    /// The PEM certificate of the CA that signed an https server's certificate (a private CA;
    /// without it, the usual public roots).
    #[arg(long, env = "MLE_CA_CERT", value_name = "PEM", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Output format of read commands.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub format: Format,
}

/// Output format of read commands.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Format {
    /// YAML where the user asked for a table of a single resource.
    pub fn or_yaml(self) -> Format {
        if self == Format::Table {
            Format::Yaml
        } else {
            self
        }
    }
}

/// A client for one project of one server.
pub struct Client {
    base: String,
    token: String,
    project: String,
    agent: ureq::Agent,
}

/// An agent that trusts only the CA in `pem`.
fn agent_trusting(pem: &std::path::Path) -> Result<ureq::Agent> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(pem).with_context(|| format!("--ca-cert {}", pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.with_context(|| format!("--ca-cert {}: not PEM", pem.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("--ca-cert {}", pem.display()))?;
    }
    if roots.is_empty() {
        bail!("--ca-cert {}: no certificate in it", pem.display());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .tls_config(std::sync::Arc::new(cfg))
        .build())
}

impl Client {
    /// From the connection flags; the token defaults to the data dir's token file.
    pub fn new(c: &Conn) -> Result<Self> {
        let token = match &c.token {
            Some(t) => t.clone(),
            None => {
                let path = default_data_dir().join("token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --token or MLE_TOKEN, and cannot read {}",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        let agent = match &c.ca_cert {
            Some(pem) => agent_trusting(pem)?,
            None => ureq::agent(),
        };
        Ok(Self {
            base: c.server.trim_end_matches('/').to_string(),
            token,
            project: c.project.clone(),
            agent,
        })
    }

    /// The project requests go to.
    pub fn project(&self) -> &str {
        &self.project
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/projects/{}/{path}", self.base, self.project)
    }

    /// `GET` of a project-relative path.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None::<&()>)
    }

    /// `DELETE` of a project-relative path.
    pub fn delete(&self, path: &str) -> Result<Value> {
        self.call("DELETE", path, None::<&()>)
    }

    /// `POST` of a typed body.
    pub fn post(&self, path: &str, body: &impl Serialize) -> Result<Value> {
        self.call("POST", path, Some(body))
    }

    fn call<B: Serialize + ?Sized>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value> {
        let req = self
            .agent
            .request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {}", self.token))
            .timeout(Duration::from_secs(60));
        let resp = match body {
            Some(b) => req.send_json(serde_json::to_value(b).context("encoding the request")?),
            None => req.call(),
        };
        match resp {
            Ok(r) => Ok(r.into_json().context("reading the server's answer")?),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                // The Google envelope, prediction's `{"error": "..."}`, or plain text (a TLS
                // port asked in plain HTTP).
                let msg = v["error"]["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or(text.trim())
                    .to_string();
                bail!("the server refused ({code}): {msg}")
            }
            Err(ureq::Error::Transport(t)) => bail!(
                "cannot reach the mle server at {}: {t}\nstart one with `mle server --data-dir DIR`, or point --server/MLE_SERVER at it",
                self.base
            ),
        }
    }
}

/// Prints `v` as JSON, YAML, or (for tables) with `table`.
pub fn print(v: &Value, format: Format, table: impl FnOnce(&Value)) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(v)?),
        Format::Table => table(v),
    }
    Ok(())
}

/// A local path as an absolute one (URIs are left as they are): the server resolves nothing
/// relative to the client's working directory.
pub fn absolute(p: &str) -> String {
    if p.contains("://") {
        return p.to_string();
    }
    std::path::absolute(p)
        .map(|x| x.display().to_string())
        .unwrap_or_else(|_| p.to_string())
}
