//! `mle server`: its flags, the execution backend they choose (checked at start-up), and the
//! service started with them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use crate::data_dir::default_data_dir;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
/// `mle server`'s flags.
pub struct ServerArgs {
    #[command(subcommand)]
    command: Option<ServerCommand>,
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Database, runs, logs and the token file [default: $MLE_DATA_DIR or ~/.mle].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL URL instead of the SQLite file in the data dir.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Replica slots: jobs wait in the queue rather than run more replicas than this at once.
    #[arg(long, default_value = "16")]
    slots: usize,
    /// Refuse job dirs and packages outside this directory (symlinks and `..` resolved first).
    #[arg(long, value_name = "DIR")]
    allow_root: Option<PathBuf>,
    /// A bucket that `gs://` and `s3://` job dirs, packages, models and batch prediction paths
    /// may name (repeatable; `*` is any bucket). Without it every bucket is allowed, unless
    /// --allow-root is set. The server reads buckets with its own credentials (the standard
    /// variables: STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS, AWS_*); trainers that
    /// read them themselves get them only through --pass-env.
    #[arg(long = "allow-bucket", value_name = "NAME")]
    allow_buckets: Vec<String>,
    /// Where jobs run: `local` (supervised processes on this machine) or `slurm` (one Slurm
    /// job per training job, tuning trial or batch prediction job, through sbatch/srun;
    /// SLURM_CONF and PATH select the cluster, and the data dir must be on a file system every
    /// node shares).
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    backend: BackendKind,
    /// Slurm partition for the jobs (default: the cluster's default partition).
    #[arg(long, value_name = "NAME")]
    slurm_partition: Option<String>,
    /// An extra sbatch argument, passed verbatim (repeatable), e.g. `--slurm-sbatch-arg=--account=ml`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    slurm_sbatch_arg: Vec<String>,
    /// Open client connections at once; connections over the cap are closed as they arrive.
    #[arg(long, default_value = "1024", value_name = "N")]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers (and an idle keep-alive
    /// connection may wait) before it is dropped.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = positive_secs)]
    header_timeout: f64,
    /// A program a job's `containerCommand` may start besides the mle binary and the Python
    /// interpreter (repeatable; a name looked up on PATH, or a path). Anything else is refused
    /// with a 400: a token that may submit jobs must not be a shell on this machine.
    #[arg(long, value_name = "PROGRAM")]
    allow_command: Vec<String>,
    /// The PEM certificate chain to serve HTTPS with (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The user a job's replicas and pip run as, so that a trainer cannot read the data dir
    /// (the token, the database, other jobs' logs) [default: nobody when the server runs as
    /// root, otherwise the server's own user]. `--run-as` the server's own user (`root`) turns
    /// the switch off. Local backend only: on Slurm, jobs run as the user that submits them.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// A variable of the server's environment that jobs get too (repeatable). Otherwise a
    /// job's processes (and pip) see only PATH, HOME, LANG, LC_ALL, LC_CTYPE, TZ, TMPDIR and
    /// the job's own variables (TF_CONFIG, CLOUD_ML_*, ...).
    #[arg(long, value_name = "NAME")]
    pass_env: Vec<String>,
    #[command(flatten)]
    runtimes: crate::runtimes::RuntimeFlags,
    /// A directory (or URL) of packages pip may install a job's dependencies from, besides the
    /// index (pip's --find-links; repeatable).
    #[arg(long, value_name = "DIR|URL")]
    find_links: Vec<String>,
    /// The package index pip installs a job's dependencies from (pip's --index-url).
    #[arg(long, value_name = "URL")]
    index_url: Option<String>,
    /// Any other argument for pip when it installs a job's packages, passed verbatim
    /// (repeatable), e.g. `--pip-arg=--no-index` for a site without an index.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pip_arg: Vec<String>,
    /// Seconds installing a job's packages may take; then the job FAILS.
    #[arg(long, default_value = "900", value_name = "SECS", value_parser = positive_secs)]
    pip_timeout: f64,
    /// Seconds one request may take, body and answer included; slower ones get 408.
    #[arg(long, default_value = "120", value_name = "SECS", value_parser = positive_secs)]
    request_timeout: f64,
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Named tokens of a data dir: each a principal with a role in some projects (works while
    /// the server runs; a revoked token is refused from its next request on).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token; prints it once on stdout (only its SHA-256 is stored).
    Create {
        /// The token's name (letters, digits and underscores, starting with a letter).
        name: String,
        /// viewer (read), modelUser (read models, predict), developer (viewer + modelUser +
        /// submit and cancel jobs, create models and versions, patch labels) or admin
        /// (everything in its projects, deletes and setDefault included).
        #[arg(long, value_parser = ["viewer", "modelUser", "developer", "admin"])]
        role: String,
        /// A project the role holds in (repeatable).
        #[arg(long = "project", value_name = "PROJECT", required = true)]
        projects: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the tokens (names, roles, projects; never the tokens).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which store the tokens live in.
#[derive(Args)]
struct StoreArgs {
    /// The server's data dir [default: $MLE_DATA_DIR or ~/.mle].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's PostgreSQL URL, when it uses one.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

/// `mle server tokens ...`.
fn tokens(cmd: TokensCommand) -> Result<i32> {
    let store_args = match &cmd {
        TokensCommand::Create { store, .. }
        | TokensCommand::List { store }
        | TokensCommand::Revoke { store, .. } => store,
    };
    let data_dir = store_args.data_dir.clone().unwrap_or_else(default_data_dir);
    let database = store_args.database.clone();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        if database.is_none() && !data_dir.is_dir() {
            bail!(
                "no data dir at {} (start `mle server` on it once, or pass --data-dir)",
                data_dir.display()
            );
        }
        let store = mle_server::open_store(&data_dir, database.as_deref())
            .await
            .context("opening the store")?;
        match cmd {
            TokensCommand::Create {
                name,
                role,
                projects,
                ..
            } => {
                let (info, token) =
                    mle_server::create_token(&store, &name, &role, &projects).await?;
                eprintln!(
                    "token '{}' ({} in {}); it is shown once:",
                    info.name,
                    info.role,
                    info.projects.join(", ")
                );
                println!("{token}");
            }
            TokensCommand::List { .. } => {
                println!("{:<24} {:<10} {:<21} PROJECTS", "NAME", "ROLE", "CREATED");
                for t in mle_server::list_tokens(&store).await? {
                    println!(
                        "{:<24} {:<10} {:<21} {}",
                        t.name,
                        t.role,
                        t.create_time,
                        t.projects.join(",")
                    );
                }
            }
            TokensCommand::Revoke { name, .. } => {
                mle_server::revoke_token(&store, &name).await?;
                eprintln!("token '{name}' revoked");
            }
        }
        Ok(0)
    })
}

/// `--run-as`: the user named (or `nobody` for a server running as root), unless it is the
/// server's own user.
fn run_as(name: Option<&str>, local: bool) -> Result<Option<mle_server::RunAs>> {
    let me = nix::unistd::geteuid();
    let name = match name {
        Some(n) => n,
        None if me.is_root() && local => "nobody",
        None => return Ok(None),
    };
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("--run-as {name}: looking the user up"))?
        .with_context(|| format!("--run-as {name}: no such user"))?;
    if user.uid == me {
        return Ok(None);
    }
    if !local {
        bail!(
            "--run-as works with the local backend only (on Slurm, jobs run as the user that submits them)"
        );
    }
    if !me.is_root() {
        bail!("--run-as {name}: only a server running as root can run jobs as another user");
    }
    Ok(Some(mle_server::RunAs {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds in (0, 86400]")),
    }
}

/// `mle server --backend`.
#[derive(Clone, Copy, ValueEnum)]
enum BackendKind {
    /// Supervised processes on this machine.
    Local,
    /// Slurm jobs.
    Slurm,
}

/// `mle server`: runs the job service until it is stopped.
pub fn server(a: ServerArgs) -> Result<i32> {
    if let Some(ServerCommand::Tokens(t)) = a.command {
        return tokens(t);
    }
    let data_dir = a.data_dir.unwrap_or_else(default_data_dir);
    let mle_exe = std::env::current_exe().context("locating the mle binary")?;
    let backend = match a.backend {
        BackendKind::Local => mle_exec::Backend::Local {
            mle_exe: mle_exe.clone(),
        },
        BackendKind::Slurm => {
            // Fail at start-up, not at the first job, when the cluster cannot be reached.
            let out = std::process::Command::new("sinfo")
                .args(["-h", "-o", "%P"])
                .output()
                .context("--backend slurm: cannot run sinfo (is Slurm installed and on PATH?)")?;
            if !out.status.success() {
                bail!(
                    "--backend slurm: the Slurm controller does not answer (is SLURM_CONF right?): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            mle_exec::Backend::Slurm(mle_exec::Slurm::new(
                mle_exe.clone(),
                a.slurm_partition.clone(),
                a.slurm_sbatch_arg.clone(),
            ))
        }
    };
    let limits = mle_server::Limits {
        max_connections: a.max_connections.max(1),
        header_timeout: std::time::Duration::from_secs_f64(a.header_timeout),
        request_timeout: std::time::Duration::from_secs_f64(a.request_timeout),
    };
    if let Some(c) = a
        .allow_command
        .iter()
        .find(|c| mle_server::find_program(c).is_none())
    {
        bail!("--allow-command {c}: no such program (on PATH or at that path)");
    }
    if let Some(r) = a
        .runtimes
        .runtime
        .iter()
        .find(|r| mle_server::find_program(&r.python).is_none())
    {
        bail!(
            "--runtime {}: no such interpreter (on PATH or at that path)",
            r
        );
    }
    let mut pip_args: Vec<String> = a
        .find_links
        .iter()
        .flat_map(|l| ["--find-links".to_string(), l.clone()])
        .collect();
    if let Some(u) = &a.index_url {
        pip_args.extend(["--index-url".to_string(), u.clone()]);
    }
    pip_args.extend(a.pip_arg.iter().cloned());
    let run_as = run_as(a.run_as.as_deref(), matches!(a.backend, BackendKind::Local))?;
    if let Some(u) = &run_as {
        eprintln!("jobs run as user {} (uid {}, gid {})", u.name, u.uid, u.gid);
    }
    let cfg = mle_server::Config {
        jobs: mle_server::JobPolicy {
            allow_commands: a.allow_command.clone(),
            pass_env: a.pass_env.clone(),
            run_as,
        },
        limits,
        data_dir: data_dir.clone(),
        slots: a.slots.max(1),
        mle_exe,
        backend,
        runtimes: a.runtimes.runtimes(),
        pip: mle_server::PipPolicy {
            args: pip_args,
            timeout: std::time::Duration::from_secs_f64(a.pip_timeout),
        },
        allow_root: match a.allow_root {
            Some(r) => Some(
                r.canonicalize()
                    .with_context(|| format!("--allow-root {}", r.display()))?,
            ),
            None => None,
        },
        allow_buckets: a.allow_buckets,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(mle_server::TlsFiles { cert, key }),
        _ => None,
    };
    rt.block_on(mle_server::run(
        &a.listen,
        cfg,
        a.database.as_deref(),
        tls.as_ref(),
    ))
    .context("server failed")?;
    Ok(0)
}
