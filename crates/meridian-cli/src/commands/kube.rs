//! `meridian kube --namespace NS`: the controller inside Kubernetes. The same run loop as
//! `meridian run`, on the Kubernetes configuration source (RolloutPlan, Region and Approval
//! resources, watched) and the Kubernetes store (state in each plan's `.status.engine`,
//! audit and history in ConfigMaps), with the status a user reads written to each plan.
//!
//! Wiring only, like `run`: which client, which namespace, which adapters.

use std::sync::Arc;

use meridian_controller::control::ControlPlane;
use meridian_controller::runtime::{Adapters, SystemClock, start_with};
use meridian_kube::store::{Fence, Unfenced};
use meridian_kube::{KubeSource, KubeStore};

use super::run::{LoopArgs, ServeArgs, health_source, prepare_api, serve_api, start_error, supervise};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The namespace whose RolloutPlans, Regions and Approvals are watched, and where the
    /// state, audit and history are kept.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// A kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster
    /// ServiceAccount.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

pub fn run(args: &Args) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meridian kube: failed to start the async runtime: {e}");
            return crate::exit::FAILED;
        }
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: &Args) -> i32 {
    let fail = |e: String| {
        eprintln!("meridian kube: {e}");
        crate::exit::FAILED
    };
    let client = match meridian_kube::client(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let fence: Arc<dyn Fence> = Arc::new(Unfenced);
    let store = match KubeStore::new(client.clone(), &args.namespace, fence) {
        Ok(s) => s,
        Err(e) => return fail(e.message),
    };
    let actuator = match meridian_actuator::PlanActuators::new(meridian_actuator::ActuatorOptions::default()) {
        Ok(a) => a,
        Err(e) => return fail(e.to_string()),
    };
    let adapters = Adapters {
        store: Arc::new(store),
        health: health_source(args.loop_args.prometheus.as_deref()),
        actuator: Arc::new(actuator),
        clock: Arc::new(SystemClock),
    };
    let (listener, auth, tls) = match prepare_api(&args.serve, "meridian kube").await {
        Ok(api) => api,
        Err(e) => return fail(e),
    };
    let source = Arc::new(KubeSource::new(client.clone(), &args.namespace));
    let running = match start_with(source, args.loop_args.settings(Vec::new()), adapters).await {
        Ok(r) => r,
        Err(e) => return fail(start_error(&e)),
    };
    let control: Arc<dyn ControlPlane> = running.controller.clone();
    let reporter = tokio::spawn(meridian_kube::report::report_status(client, args.namespace.clone(), control));
    let api = match serve_api(running.controller.clone(), listener, auth, tls).await {
        Ok(api) => api,
        Err(e) => {
            running.shutdown();
            return fail(e);
        }
    };
    eprintln!(
        "meridian kube: watching RolloutPlans, Regions and Approvals in namespace {}, state in the API server, API \
         on {}://{}",
        args.namespace,
        if args.serve.tls_cert.is_some() { "https" } else { "http" },
        api.addr
    );
    let code = supervise(running, Some(api), None).await;
    reporter.abort();
    code
}
