//! magueyd: the one daemon that runs on every node.
//!
//! Every node serves the node RPC (`POST /rpc`) over mutual TLS. The master node also owns the
//! config store and the job queue and serves the master API (`/luxi/...`, used by the CLI) and
//! the join endpoints (`/join/ca`, `/join`) through which new nodes get their certificate.

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod fence;
pub mod join;
pub mod metrics;
pub mod raft;
pub mod rapi_users;
pub mod replicated;
mod replicated_http;
mod replicated_rapi;
pub mod runtime;
pub mod systemd;

/// The state directory's files (shared with the CLI and the lab through `maguey-bootstrap`).
pub use maguey_bootstrap::files;

/// The Remote API crate, re-exported for the lab and the CLI.
pub use maguey_rapi as rapi;

use anyhow::{bail, Context, Result};
use clap::Parser;
use files::DaemonFile;
use maguey_config::ConfigStore;
use maguey_jobs::JobQueue;
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_ops::{Executor, Master};
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::NodeRequest;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Command-line arguments of magueyd.
#[derive(Debug, Clone, Parser)]
#[command(name = "magueyd", version, about = "Maguey's node daemon")]
pub struct Args {
    /// The node's state directory (certificates, config and job queue on the master).
    #[arg(long, env = "MAGUEY_DIR", default_value = "/var/lib/maguey")]
    pub state_dir: PathBuf,
    /// Join a cluster: the master's URL, e.g. https://192.0.2.1:1811.
    #[arg(long, requires_all = ["token", "node_name"])]
    pub join: Option<String>,
    /// The one-time token printed by `maguey node add`.
    #[arg(long)]
    pub token: Option<String>,
    /// This node's name (when joining).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address to listen on, ip:port (when joining; later read from the state directory).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Memory (MiB) the fake hypervisor reports, instead of the host's.
    #[arg(long)]
    pub fake_memory: Option<u64>,
    /// CPUs the node reports, instead of the host's.
    #[arg(long)]
    pub fake_cpus: Option<u32>,
    /// Maximum number of jobs running at once (master).
    #[arg(long, default_value_t = 20)]
    pub max_running_jobs: usize,
    /// Port of the Remote API (Ganeti's RAPI v2 over HTTPS) on the master; 0 disables it.
    #[arg(long, default_value_t = maguey_rapi::DEFAULT_PORT)]
    pub rapi_port: u16,
    /// Address the Remote API listens on (default: the node's own address).
    #[arg(long)]
    pub rapi_bind: Option<std::net::IpAddr>,
    /// RAPI users file in Ganeti's format (default: STATE_DIR/rapi/users).
    #[arg(long)]
    pub rapi_users: Option<PathBuf>,
    /// Allow GET requests without credentials on the Remote API.
    #[arg(long)]
    pub rapi_anonymous_reads: bool,
    /// PEM certificate (chain) of the Remote API, instead of the node's cluster certificate.
    #[arg(long, requires = "rapi_key")]
    pub rapi_cert: Option<PathBuf>,
    /// PEM private key of --rapi-cert.
    #[arg(long, requires = "rapi_cert")]
    pub rapi_key: Option<PathBuf>,
    /// Seconds between two passes of the watcher on the master (0: no periodic pass).
    #[arg(long, env = "MAGUEY_WATCHER_INTERVAL", default_value_t = maguey_ops::watcher::DEFAULT_INTERVAL.as_secs())]
    pub watcher_interval: u64,
    /// Age (seconds) of finished jobs that the watcher archives.
    #[arg(long, default_value_t = maguey_ops::watcher::DEFAULT_JOB_AGE.as_secs())]
    pub watcher_job_age: u64,
    /// Directory of hook scripts (`<hpath>-<pre|post>.d/`, Ganeti's layout; default
    /// STATE_DIR/hooks).
    #[arg(long, env = "MAGUEY_HOOKS_DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// Serve the master's GET /metrics on the Remote API's port without credentials.
    #[arg(long)]
    pub metrics_anonymous: bool,
    /// Settings file (TOML; default /etc/maguey/magueyd.toml when it exists). Flags win.
    #[arg(long, env = "MAGUEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Host shutdown (maguey-guests.service): ACPI power-down of every running instance,
    /// waiting up to SECONDS before stopping the rest hard; then exits.
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_guests: Option<u64>,
    /// This node is a witness of a replicated cluster: it votes for the master and stores
    /// the config's log, is never the master, and uses no hypervisor or storage (remembered
    /// in the state directory when given at `--join`).
    #[arg(long)]
    pub witness: bool,
    /// With --join: this node is in the cluster's config already and joins again with the
    /// token of `maguey node add NAME --readd` (e.g. after it was kept offline past its
    /// certificate's end): its certificate is replaced, its instances and settings kept.
    #[arg(long, requires = "join")]
    pub readd: bool,
    /// What the settings file adds that has no flag (port ranges, log level, QEMU scopes).
    #[arg(skip)]
    pub file: config::Extra,
}

/// Entry point of the `magueyd` binary.
pub fn main() -> ExitCode {
    let args = match config::args_with_file(std::env::args_os()) {
        Ok((mut args, extra)) => {
            args.file = extra;
            args
        }
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(clap_error) => clap_error.exit(),
            Err(e) => {
                eprintln!("magueyd: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAGUEY_LOG").unwrap_or_else(|_| {
        // openraft's own info lines (every vote and snapshot chunk) only at warn and above.
        tracing_subscriber::EnvFilter::new(format!(
            "{},openraft=warn",
            args.file.log_level.as_deref().unwrap_or("info")
        ))
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if systemd::logs_to_journal() {
        // journald stamps and colours lines itself.
        logs.without_time().with_ansi(false).init();
    } else {
        logs.init();
    }
    let rt = match runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("magueyd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let work = async {
        match args.shutdown_guests {
            Some(secs) => shutdown_guests(&args, Duration::from_secs(secs)).await,
            None => run(args).await,
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magueyd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Why the daemon stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal,
    LeftCluster,
    ClusterDestroyed,
}

pub async fn run(args: Args) -> Result<()> {
    let dir = args.state_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    auth::harden_state_dir(&dir)?;
    if let Some(url) = &args.join {
        join(&args, url).await?;
        // A packaged node: systemd runs the daemon from now on (and at every boot).
        if !systemd::running_as_service() && maguey_bootstrap::systemd::manages(&dir) {
            maguey_bootstrap::systemd::enable_and_start()?;
            tracing::info!("joined; magueyd.service enabled and started");
            return Ok(());
        }
    }
    let mut daemon = DaemonFile::load(&dir).with_context(|| {
        format!(
            "{} is not part of a cluster: run `maguey cluster init` or `magueyd --join URL --token T`",
            dir.display()
        )
    })?;
    if let Some(m) = args.fake_memory {
        daemon.fake_memory_mib = Some(m);
    }
    if let Some(c) = args.fake_cpus {
        daemon.fake_cpus = Some(c);
    }
    let identity = NodeIdentity::load(&dir).context("loading the node certificate")?;
    let mut runtime = NodeRuntime::new(NodeConfig {
        state_dir: dir.clone(),
        node_name: daemon.node_name.clone(),
        fake_memory_mib: daemon.fake_memory_mib,
        fake_cpus: daemon.fake_cpus,
        os_search_path: NodeConfig::default_os_search_path(&dir),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(h) = &args.hooks_dir {
        runtime.set_hooks_dir(h.clone());
    }
    let witness = args.witness || daemon.witness;
    if witness {
        tracing::info!("a witness: no hypervisor or storage; never the master");
    }
    runtime.set_witness(witness);
    runtime.set_port_ranges(args.file.ports);
    let scopes = match args.file.qemu_scopes {
        config::QemuScopes::Auto => systemd::running_as_service(),
        config::QemuScopes::Always => true,
        config::QemuScopes::Never => false,
    };
    if scopes {
        tracing::info!("each QEMU runs in its own scope under maguey.slice");
    }
    runtime.set_systemd_scopes(scopes);
    let node = Arc::new(runtime);
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<Stop>(4);

    let auth = auth::NodeAuth {
        state_dir: dir.clone(),
    };
    let fence = fence::NodeFence::open(auth).context("loading the master term")?;
    let mut router = api::node_router(node.clone(), stop_tx.clone(), fence)
        .merge(metrics::node_router(node.clone()));
    let mut master_parts = None;
    // `cluster init --replicated`: the config store becomes the replica's first snapshot.
    replicated::upgrade_if_asked(&dir, &daemon.node_name)?;
    // Every node answers `/raft` (to master candidates only); a candidate of a replicated
    // cluster serves the master API when it leads and redirects to the leader otherwise.
    let args = Args { witness, ..args };
    let candidacy = replicated::Candidacy::new(&args, &daemon.node_name, daemon.listen, &identity);
    router = router.merge(replicated::router(candidacy.clone()));
    {
        // `cluster destroy` on a replicated master: as below for a single master.
        let stop_tx = stop_tx.clone();
        let destroy = candidacy.destroy.clone();
        tokio::spawn(async move {
            destroy.notified().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = stop_tx.send(Stop::ClusterDestroyed).await;
        });
    }
    if files::config_path(&dir).exists() {
        let config = Arc::new(
            ConfigStore::open(&files::config_path(&dir)).context("opening the config store")?,
        );
        let cluster = config.snapshot().cluster.clone();
        // Every node RPC carries the cluster and the master's term (docs/security.md).
        // It presents the node certificate renewed in place (`renew-crypto`) as soon as it is.
        let rpc = maguey_rpc::reload::rpc_client(&dir, Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_fence(maguey_rpc::Fence::new(&cluster.uuid, cluster.fence_term()));
        let destroy = Arc::new(tokio::sync::Notify::new());
        let master = Arc::new(Master {
            config: config.clone(),
            rpc,
            node_name: daemon.node_name.clone(),
            destroy: destroy.clone(),
        });
        let queue = JobQueue::open(&files::jobs_path(&dir), args.max_running_jobs)
            .map_err(|e| anyhow::anyhow!("opening the job queue: {e}"))?;
        let ca = maguey_rpc::ca::ClusterCa::load(&dir).context("loading the cluster CA")?;
        let watcher = Arc::new(maguey_ops::watcher::Watcher::new(
            master.clone(),
            queue.clone(),
            Arc::new(maguey_ops::watcher::SystemClock),
            maguey_ops::watcher::WatcherOptions {
                job_age: Duration::from_secs(args.watcher_job_age),
                state_file: Some(dir.join("watcher.json")),
                ..Default::default()
            },
        ));
        record_master_identity(&config, &daemon.node_name, &identity, &ca, &dir)?;
        let state = api::MasterState {
            master: master.clone(),
            queue: queue.clone(),
            ca: Arc::new(ca),
            listen: daemon.listen,
            watcher,
            admin: Arc::new(maguey_rpc::rotate::CurrentAdmin::new(&dir)),
            state_dir: dir.clone(),
            users_file: args
                .rapi_users
                .clone()
                .unwrap_or_else(|| maguey_rapi::default_users_file(&dir)),
        };
        // A master (maybe a new one) writes the config's RAPI users to its users file.
        let users = master.config.snapshot().rapi_users.clone();
        if !users.is_empty() {
            if let Err(e) = rapi_users::sync_users_file(&state.users_file, &users, &[]) {
                tracing::warn!("writing the RAPI users file: {e}");
            }
        }
        router = router.merge(api::master_router(state.clone()));
        {
            let stop_tx = stop_tx.clone();
            tokio::spawn(async move {
                destroy.notified().await;
                // Let the job's final state reach its waiters first.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let _ = stop_tx.send(Stop::ClusterDestroyed).await;
            });
        }
        master_parts = Some((master, queue, state));
    }
    let rapi_server = match &master_parts {
        Some((master, queue, state)) => {
            start_rapi(&args, &identity, &dir, daemon.listen, master, queue, state).await?
        }
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(daemon.listen)
        .await
        .with_context(|| format!("listening on {}", daemon.listen))?;
    let tls = maguey_rpc::reload::server_config(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Jobs start only once this node's own RPC listener is bound: their first RPC may be to
    // this very node (connections wait in the listen backlog until the server loop runs).
    if let Some((master, queue, state)) = &master_parts {
        queue.start(Arc::new(Executor {
            master: master.clone(),
        }));
        if args.watcher_interval > 0 {
            let watcher = state.watcher.clone();
            let every = Duration::from_secs(args.watcher_interval);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    for line in watcher.run_once().await.lines() {
                        tracing::info!("watcher: {line}");
                    }
                }
            });
        }
        // Short-lived node certificates renewed before they end (docs/security.md).
        tokio::spawn(maguey_ops::cert_renewal::run(master.clone(), queue.clone()));
        let master = master.clone();
        tokio::spawn(async move {
            for (name, e) in master.distribute_ssconf().await {
                tracing::warn!("ssconf to node {name}: {e}");
            }
            match maguey_ops::master_ip::activate_configured(&master).await {
                Ok(Some(m)) => tracing::info!("master IP {} up on {}", m.cidr(), m.netdev),
                Ok(None) => {}
                Err(e) => tracing::warn!("master IP: {e}"),
            }
        });
    }
    if candidacy.has_store() {
        candidacy.open().await?;
    }
    files::write_pidfile(&dir)?;
    tracing::info!(
        "magueyd {} for node {} listening on {}{}",
        maguey_model::VERSION,
        daemon.node_name,
        daemon.listen,
        if master_parts.is_some() {
            " (master)"
        } else {
            ""
        }
    );
    // The handlers exist before READY: a SIGTERM right after it must stop the daemon cleanly,
    // not kill it with the default action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    systemd::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    let signals = async {
        tokio::select! {
            _ = wait_signal(int.as_mut()) => Stop::Signal,
            _ = wait_signal(term.as_mut()) => Stop::Signal,
            s = stop_rx.recv() => s.unwrap_or(Stop::Signal),
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(maguey_rpc::server::serve(
        listener,
        tls,
        router,
        async move {
            let _ = done_rx.await;
        },
    ));
    let why = signals.await;
    systemd::notify("STOPPING=1");
    let _ = done_tx.send(());
    if let Some(r) = rapi_server {
        r.stop().await;
    }
    candidacy.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    match why {
        Stop::Signal => tracing::info!("stopping on signal"),
        Stop::LeftCluster => {
            // A candidate's replica may have written the ssconf again after the node's files
            // went (it follows the config until it stops): they go again, now for good.
            for f in maguey_node::CLUSTER_FILES {
                let _ = std::fs::remove_file(dir.join(f));
            }
            tracing::info!("left the cluster")
        }
        Stop::ClusterDestroyed => {
            drop(master_parts);
            files::wipe_master_state(&dir);
            tracing::info!("cluster destroyed; state removed");
        }
    }
    // Last: whoever waits for the daemon to be gone finds its state as it left it.
    files::remove_pidfile(&dir);
    Ok(())
}

/// The Remote API's server of a master: stopped when the node stops or loses the mastership.
pub(crate) struct RapiServer {
    done: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RapiServer {
    /// Stops accepting and waits (2 s at most) for the requests under way.
    pub(crate) async fn stop(self) {
        let _ = self.done.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Starts the Remote API of a master (none when `--rapi-port 0`).
pub(crate) async fn start_rapi(
    args: &Args,
    // The certificate now comes from the state directory (followed when renewed).
    _identity: &NodeIdentity,
    dir: &std::path::Path,
    listen: SocketAddr,
    master: &Arc<Master>,
    queue: &Arc<JobQueue>,
    state: &api::MasterState,
) -> Result<Option<RapiServer>> {
    if args.rapi_port == 0 {
        return Ok(None);
    }
    let router = rapi_router(args, dir, master, queue, state)?;
    serve_rapi(args, dir, listen, router).await.map(Some)
}

/// Binds the Remote API's port (`--rapi-bind`, or the node's address) and serves `router`.
pub(crate) async fn serve_rapi(
    args: &Args,
    dir: &std::path::Path,
    listen: SocketAddr,
    router: axum::Router,
) -> Result<RapiServer> {
    let bind = SocketAddr::new(args.rapi_bind.unwrap_or(listen.ip()), args.rapi_port);
    let tls = match (&args.rapi_cert, &args.rapi_key) {
        (Some(c), Some(k)) => maguey_rapi::tls::config_from_files(c, k)?,
        // rapi.pem when renew-crypto made one, else the node's certificate (both followed).
        _ => maguey_rpc::reload::rapi_server_config(dir).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("Remote API: listening on {bind}"))?;
    tracing::info!("Remote API listening on https://{bind}");
    let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(maguey_rpc::server::serve(
        listener,
        tls,
        router,
        async move {
            let _ = done_rx.await;
        },
    ));
    Ok(RapiServer { done, task })
}

/// The Remote API's routes of a master: Ganeti's resources, `/metrics` and the CLI's routes
/// with RAPI credentials.
pub(crate) fn rapi_router(
    args: &Args,
    dir: &std::path::Path,
    master: &Arc<Master>,
    queue: &Arc<JobQueue>,
    state: &api::MasterState,
) -> Result<axum::Router> {
    let users_file = args
        .rapi_users
        .clone()
        .unwrap_or_else(|| maguey_rapi::default_users_file(dir));
    auth::check_users_file_mode(&users_file)?;
    let rapi = maguey_rapi::Rapi::new(
        master.clone(),
        queue.clone(),
        maguey_rapi::RapiConfig {
            users_file,
            anonymous_reads: args.rapi_anonymous_reads,
            max_body: maguey_rapi::DEFAULT_MAX_BODY,
        },
    );
    Ok(rapi
        .clone()
        .router()
        .merge(metrics::master_router(
            state.clone(),
            rapi.clone(),
            args.metrics_anonymous,
        ))
        .merge(api::master_router_basic_auth(state.clone(), rapi))
        .layer(axum::middleware::from_fn(metrics::access_log)))
}

/// `magueyd --shutdown-guests SECONDS`: see [`maguey_node::NodeRuntime::power_down_guests`].
async fn shutdown_guests(args: &Args, timeout: Duration) -> Result<()> {
    let dir = &args.state_dir;
    let daemon = DaemonFile::load(dir)?;
    let runtime = NodeRuntime::new(NodeConfig {
        state_dir: dir.clone(),
        node_name: daemon.node_name.clone(),
        fake_memory_mib: daemon.fake_memory_mib,
        fake_cpus: daemon.fake_cpus,
        os_search_path: NodeConfig::default_os_search_path(dir),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let done = runtime
        .power_down_guests(timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for d in &done {
        tracing::info!(
            "instance {}: {}",
            d.name,
            if d.clean {
                "powered off (ACPI)"
            } else {
                "stopped hard after the timeout"
            }
        );
    }
    Ok(())
}

async fn join(args: &Args, url: &str) -> Result<()> {
    let dir = &args.state_dir;
    if NodeIdentity::load(dir).is_ok() && !args.readd {
        bail!(
            "{} already holds a node certificate: this node is already in a cluster (to join \
             again with the token of `maguey node add NAME --readd`, add --readd)",
            dir.display()
        );
    }
    // A re-added node keeps its settings (address, fake sizes) unless flags change them.
    let old = if args.readd {
        DaemonFile::load(dir).ok()
    } else {
        None
    };
    if let (Some(old), Some(name)) = (&old, &args.node_name) {
        if old.node_name != *name {
            bail!(
                "{} belongs to node {}, not {name}",
                dir.display(),
                old.node_name
            );
        }
    }
    let listen = args.listen.or(old.as_ref().map(|o| o.listen));
    let (Some(token), Some(name), Some(listen)) = (&args.token, &args.node_name, listen) else {
        bail!("--join needs --token, --node-name and --listen");
    };
    maguey_model::names::validate_hostname(name)?;
    let (identity, master_name, master_certificate) =
        maguey_rpc::join::join_cluster(url, token, name)
            .await
            .map_err(|e| anyhow::anyhow!("joining {url}: {e}"))?;
    identity.save(dir).context("saving the node certificate")?;
    if args.readd {
        // The old ssconf may name a master certificate renewed meanwhile: until the master
        // sends the current one (when the re-add job runs), the join's answer says who it is.
        let ssconf = dir.join(maguey_node::SSCONF_FILE);
        if ssconf.exists() {
            std::fs::remove_file(&ssconf)
                .with_context(|| format!("removing {}", ssconf.display()))?;
        }
    }
    // Until the first ssconf, the master named here is the one client this node obeys.
    auth::JoinedMaster {
        name: master_name,
        certificate: master_certificate,
    }
    .save(dir)?;
    DaemonFile {
        node_name: name.clone(),
        listen,
        fake_memory_mib: args
            .fake_memory
            .or(old.as_ref().and_then(|o| o.fake_memory_mib)),
        fake_cpus: args.fake_cpus.or(old.as_ref().and_then(|o| o.fake_cpus)),
        witness: args.witness || old.as_ref().is_some_and(|o| o.witness),
    }
    .save(dir)?;
    tracing::info!("joined the cluster at {url} as {name}");
    Ok(())
}

/// On the master, at start: the config records this node's certificate (clusters initialised
/// before identities were recorded get it now; nodes then learn it from the ssconf), and the
/// state directory holds an admin certificate for the CLI (created if missing, mode 0600).
fn record_master_identity(
    config: &ConfigStore,
    node_name: &str,
    identity: &NodeIdentity,
    ca: &maguey_rpc::ca::ClusterCa,
    dir: &std::path::Path,
) -> Result<()> {
    let cfg = config.snapshot();
    let fingerprint = identity.fingerprint();
    if let Some(node) = cfg.node_by_name(node_name) {
        if node.certificate_fingerprint != fingerprint {
            let mut node = node.clone();
            node.certificate_fingerprint = fingerprint;
            config
                .apply(maguey_config::Command::UpdateNode { node })
                .context("recording the master's certificate in the config")?;
        }
    }
    if maguey_rpc::ca::NodeIdentity::load_admin(dir).is_err() {
        ca.issue_admin()
            .and_then(|admin| admin.save_admin(dir))
            .map_err(|e| anyhow::anyhow!("creating the admin certificate: {e}"))?;
        tracing::info!(
            "created the admin certificate {}",
            dir.join(maguey_rpc::ca::ADMIN_CERT_FILE).display()
        );
    }
    Ok(())
}

/// Asks a node to leave (used by the node RPC handler's caller to stop after replying).
pub fn is_leave(req: &NodeRequest) -> bool {
    matches!(req, NodeRequest::LeaveCluster)
}

/// Resolves when the signal arrives (never when its handler could not be installed).
async fn wait_signal(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
