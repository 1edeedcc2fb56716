//! `meridian kube --namespace NS [--all-namespaces]`: the controller inside Kubernetes. The same run loop as
//! `meridian run`, on the Kubernetes configuration source (RolloutPlan, Region and Approval
//! resources, watched) and the Kubernetes store (state in each plan's `.status.engine`,
//! audit and history in ConfigMaps), with the status a user reads written to each plan.
//!
//! High availability: replicas elect a leader on a Lease (`--lease-*`). A follower serves the
//! same API and dashboard read from the API server, and queues commands for the leader
//! (`meridian_kube::follower`); the leader
//! starts the run loop with its store writes and its actuations fenced by its term
//! (`meridian_kube::fenced`), and exits the moment its right to act lapses, so that it
//! restarts as a follower; the next leader resumes from the state in the API server.
//!
//! Namespaces (`meridian_kube::scope`): `--namespace` is where the controller's own objects
//! live (the Lease, the history, recorded approvals) and, without `--all-namespaces`, the one
//! namespace whose resources are watched. With `--all-namespaces` RolloutPlans, Regions,
//! Approvals and RolloutCommands of every namespace are watched, each plan's objects kept in
//! its own namespace; one `Namespaces` is shared by the source (which places the plans) and
//! every writer.
//!
//! Wiring only, like `run`: which client, which namespace, which adapters.

use std::sync::Arc;

use meridian_controller::control::ControlPlane;
use meridian_controller::log::{Level, say};
use meridian_controller::runtime::{Adapters, SystemClock, start_with};
use meridian_core::duration::Span;
use meridian_kube::events::PlanEvents;
use meridian_kube::fenced::{FencedActuator, LeaseFence};
use meridian_kube::follower::FollowerControl;
use meridian_kube::lease::{self, LeaseSettings};
use meridian_kube::scope::Namespaces;
use meridian_kube::store::{Fence, ReadOnly, Unfenced};
use meridian_kube::{KubeSource, KubeStore};

use super::run::{
    LoopArgs, Notifications, ServeArgs, bind_api, health_source, prepare_api, serve_api, shutdown_signal, start_error,
    supervise,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The namespace where the controller's own objects live (the Lease, the history, recorded
    /// approvals) and, without --all-namespaces, whose RolloutPlans, Regions and Approvals are
    /// watched and where their state and audit are kept.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Watch RolloutPlans, Regions, Approvals and RolloutCommands in every namespace (needs
    /// deploy/cluster's ClusterRole). A plan's status, audit, Events and commands stay in its
    /// namespace; an Approval or Region counts for the plans of its own namespace only; of two
    /// plans with the same name the one created first runs, the other is refused.
    #[arg(long)]
    pub all_namespaces: bool,
    /// A kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster
    /// ServiceAccount.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// This replica's name in the election (unique per process; the pod's name in a Deployment).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The Lease the replicas elect their leader on.
    #[arg(long, default_value = "meridian")]
    pub lease_name: String,
    /// How long a leader's lease holds after its last renewal (whole seconds); a new leader
    /// takes over within this plus the retry period after the leader stops renewing.
    #[arg(long, default_value = "15s")]
    pub lease_duration: Span,
    /// A leader that could not renew for this long stops acting (before its lease expires).
    #[arg(long, default_value = "10s")]
    pub renew_deadline: Span,
    /// How often leases are renewed and tried.
    #[arg(long, default_value = "2s")]
    pub retry_period: Span,
    /// Run as the only replica, without an election (never run two like that).
    #[arg(long, conflicts_with_all = ["identity", "lease_name"])]
    pub no_leader_election: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

pub fn run(args: &Args) -> i32 {
    args.loop_args.init_log();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say(Level::Error, "meridian kube", &format!("failed to start the async runtime: {e}"));
            return crate::exit::FAILED;
        }
    };
    let code = runtime.block_on(run_async(args));
    // The process exits right after this (main). Dropping the runtime first would shut its
    // timer down under blocking-pool threads still inside a store call (`Handle::block_on`
    // with a request in flight, as when a deposed leader exits): they would panic with
    // "runtime is shutting down" on the way out, a stack trace in the log of a clean exit.
    std::mem::forget(runtime);
    code
}

/// `--identity`, or HOSTNAME-PID (unique per process, as the election needs).
fn identity(args: &Args) -> String {
    match &args.identity {
        Some(id) => id.clone(),
        None => format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
            std::process::id()
        ),
    }
}

/// Where the watched resources and each plan's objects are, per the flags.
fn namespaces(args: &Args) -> Arc<Namespaces> {
    Arc::new(if args.all_namespaces { Namespaces::all(&args.namespace) } else { Namespaces::one(&args.namespace) })
}

fn lease_settings(args: &Args) -> Result<LeaseSettings, String> {
    let mut settings = LeaseSettings::new(&args.namespace, &args.lease_name, &identity(args));
    settings.lease_duration = std::time::Duration::from_millis(args.lease_duration.as_millis());
    settings.renew_deadline = std::time::Duration::from_millis(args.renew_deadline.as_millis());
    settings.retry_period = std::time::Duration::from_millis(args.retry_period.as_millis());
    // Said with the flags the user gave, not the settings' field names.
    settings.validate().map_err(|e| {
        e.to_string()
            .replace("renew_deadline", "--renew-deadline")
            .replace("lease_duration", "--lease-duration")
            .replace("retry_period", "--retry-period")
    })?;
    Ok(settings)
}

async fn run_async(args: &Args) -> i32 {
    let fail = |e: String| {
        say(Level::Error, "meridian kube", &e);
        crate::exit::FAILED
    };
    // Bad election settings are said before anything is contacted.
    let settings = match lease_settings(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let client = match meridian_kube::client(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (listener, auth, tls) = match prepare_api(&args.serve, "meridian kube").await {
        Ok(api) => api,
        Err(e) => return fail(e),
    };
    // A bad sinks file stops the start, not the first lead.
    if let Some(path) = &args.loop_args.notifications
        && let Err(e) = meridian_notify::load(path)
    {
        return fail(e.to_string());
    }
    if args.no_leader_election {
        let identity = settings.identity.clone();
        return lead(args, &identity, client, (listener, auth, tls), Arc::new(Unfenced), std::future::pending()).await;
    }
    let leadership = match lease::spawn(client.clone(), settings.clone()) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(format!("cannot read the listen address: {e}")),
    };
    // Follow: the same API and dashboard, read from the API server; commands queued for the
    // leader; nothing decided, written or actuated here.
    let placed = namespaces(args);
    let reader = match KubeStore::with_namespaces(client.clone(), placed.clone(), Arc::new(ReadOnly)) {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(e.message),
    };
    let who = leadership.clone();
    let view = FollowerControl::new(
        Arc::new(KubeSource::watching(client.clone(), placed)),
        reader,
        Arc::new(move || who.holder()),
        chrono::TimeDelta::from_std(args.loop_args.settings(Vec::new()).expiry_warning).ok(),
    );
    let refresh = tokio::spawn(view.clone().run());
    let router = meridian_api::router(view, auth.clone(), meridian_api::Limits::default());
    let (stop_following, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(meridian_api::serve(listener, router, tls.clone(), async move {
        let _ = stopped.await;
    }));
    say(
        Level::Info,
        "meridian kube",
        &format!(
            "{} follows on lease {}/{} (leader: {}); read-only API on {addr}",
            settings.identity,
            settings.namespace,
            settings.name,
            leadership.holder().unwrap_or_else(|| "none yet".into())
        ),
    );
    let term = tokio::select! {
        term = leadership.until_leading() => match term {
            Ok(term) => term,
            Err(e) => return fail(format!("the election stopped: {e}")),
        },
        _ = shutdown_signal() => return crate::exit::OK,
    };
    let _ = stop_following.send(());
    let _ = follower.await;
    refresh.abort();
    say(Level::Info, "meridian kube", &format!("{} leads, term {}", term.identity, term.transitions));
    let listener = match bind_api(&addr.to_string()).await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let fence = Arc::new(LeaseFence { leadership: leadership.clone(), term: term.transitions });
    let deposed = async move {
        leadership.lost(&term).await;
        format!(
            "{} lost the lease of term {} (now held by {})",
            term.identity,
            term.transitions,
            leadership.holder().unwrap_or_else(|| "nobody yet".into())
        )
    };
    lead(args, &settings.identity, client, (listener, auth, tls), fence, deposed).await
}

/// What the API is served on and with: the bound listener, its authentication, its TLS files.
type Served = (tokio::net::TcpListener, meridian_api::Auth, Option<meridian_api::TlsFiles>);

/// The leader's part: the run loop on the cluster's resources and state, fenced.
async fn lead(
    args: &Args,
    identity: &str,
    client: meridian_kube::Client,
    (listener, auth, tls): Served,
    fence: Arc<dyn Fence>,
    deposed: impl std::future::Future<Output = String>,
) -> i32 {
    let fail = |e: String| {
        say(Level::Error, "meridian kube", &e);
        crate::exit::FAILED
    };
    let placed = namespaces(args);
    let store = match KubeStore::with_namespaces(client.clone(), placed.clone(), fence.clone()) {
        Ok(s) => s,
        Err(e) => return fail(e.message),
    };
    let options = meridian_actuator::ActuatorOptions { instance: Some(identity.to_string()), ..Default::default() };
    let actuator = match meridian_actuator::PlanActuators::new(options) {
        Ok(a) => a,
        Err(e) => return fail(e.to_string()),
    };
    let store: Arc<KubeStore> = Arc::new(store);
    // Only the leader decides, so only the leader tells the sinks.
    let notifications = match args.loop_args.notifier("meridian kube") {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let adapters = Adapters {
        store: store.clone(),
        health: health_source(args.loop_args.prometheus.as_deref()),
        // Targets with `actuator: kubernetes` go to the Kubernetes actuator, the rest to HTTP
        // (or the dry-run log); every one of them fenced.
        actuator: Arc::new(FencedActuator {
            inner: Arc::new(meridian_kube::actuator::Routed {
                kube: meridian_kube::actuator::KubeActuator::new(client.clone(), args.namespace.clone()),
                other: Arc::new(actuator),
            }),
            fence,
        }),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(meridian_controller::runtime::NoNotifier),
    };
    let mut adapters = adapters;
    Notifications::plug(&notifications, &mut adapters);
    let source = Arc::new(KubeSource::watching(client.clone(), placed.clone()));
    let running = match start_with(source, args.loop_args.settings(Vec::new()), adapters).await {
        Ok(r) => r,
        Err(e) => return fail(start_error(&e)),
    };
    Notifications::export(notifications, &running);
    // `meridian_leader{leader=IDENTITY} 1`: with the followers' 0, an alert tells a cluster
    // where no replica leads from one where none is up.
    running.controller.metrics_registry().lead(identity);
    let control: Arc<dyn ControlPlane> = running.controller.clone();
    let events = Arc::new(PlanEvents::with_namespaces(client.clone(), placed.clone(), identity));
    let reporter = tokio::spawn(meridian_kube::report::report_status(
        client.clone(),
        placed.clone(),
        control.clone(),
        events.clone(),
    ));
    let transitions = tokio::spawn(meridian_kube::events::publish_transitions(events.clone(), control.clone()));
    let waker = running.controller.clone();
    let commands = tokio::spawn(meridian_kube::source::wake_on_commands(
        client.clone(),
        placed.clone(),
        Arc::new(move || waker.kick()),
    ));
    let strays = tokio::spawn(meridian_kube::stray::refuse_stray_commands(
        client.clone(),
        placed.clone(),
        control.clone(),
        store.clone(),
        events.clone(),
    ));
    let deletions =
        tokio::spawn(meridian_kube::finalizer::guard_deletions(client, placed.clone(), control, store, events));
    let api = match serve_api(running.controller.clone(), listener, auth, tls).await {
        Ok(api) => api,
        Err(e) => {
            running.shutdown();
            return fail(e);
        }
    };
    say(
        Level::Info,
        "meridian kube",
        &format!(
            "watching RolloutPlans, Regions and Approvals in {}, state in the API server, API on {}://{}",
            placed.describe(),
            if args.serve.tls_cert.is_some() { "https" } else { "http" },
            api.addr
        ),
    );
    let code = supervise(running, Some(api), None, deposed).await;
    reporter.abort();
    transitions.abort();
    deletions.abort();
    commands.abort();
    strays.abort();
    code
}
