//! A throwaway Kubernetes control plane for the tests: `etcd` and `kube-apiserver` (built by
//! `scripts/kube-test-binaries`, found through `MERIDIAN_KUBE_BIN`) on 127.0.0.1 with
//! self-signed serving certs, a service-account key, static tokens and RBAC, driven with the
//! real `kubectl`. Shared by every test file of this crate (`mod common;`).

#![allow(dead_code, reason = "each test file uses a different part of the kit")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A throwaway control plane: etcd and kube-apiserver, killed on drop.
pub struct ControlPlane {
    _dir: tempfile::TempDir,
    /// Authenticates as `admin` (group `system:masters`), namespace `default`.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    pub bin: PathBuf,
    etcd: Child,
    apiserver: Child,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The binaries: `MERIDIAN_KUBE_BIN`, which `scripts/test` sets after building them.
pub fn kube_bin() -> PathBuf {
    let dir = std::env::var_os("MERIDIAN_KUBE_BIN").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "MERIDIAN_KUBE_BIN is not set: run the suite with scripts/test, or export \
             MERIDIAN_KUBE_BIN=$(scripts/kube-test-binaries)"
        )
    });
    for tool in ["kube-apiserver", "kubectl", "etcd"] {
        assert!(dir.join(tool).is_file(), "{} has no {tool}; run scripts/kube-test-binaries", dir.display());
    }
    dir
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        ControlPlane::start_with_tokens(&[])
    }

    /// Started with static tokens for more identities besides the admin: `(token, user,
    /// groups)`; `kubeconfig_for(token)` writes a kubeconfig that authenticates with one.
    pub fn start_with_tokens(identities: &[(&str, &str, &[&str])]) -> ControlPlane {
        let bin = kube_bin();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let key = path.join("sa.key");
        let made = Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048").output().unwrap();
        assert!(made.status.success(), "openssl genrsa: {}", String::from_utf8_lossy(&made.stderr));
        let mut tokens = String::from("admin-token-for-the-tests,admin,admin,\"system:masters\"\n");
        for (token, user, groups) in identities {
            tokens.push_str(&format!("{token},{user},{user},\"{}\"\n", groups.join(",")));
        }
        std::fs::write(path.join("tokens.csv"), tokens).unwrap();
        let (client, peer, secure) = (free_port(), free_port(), free_port());
        let etcd = Command::new(bin.join("etcd"))
            .arg("--data-dir")
            .arg(path.join("etcd"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path.join("etcd.log")).unwrap())
            .spawn()
            .unwrap();
        let apiserver = Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={secure}"))
            .arg(format!("--cert-dir={}", path.join("certs").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", key.display()))
            .arg(format!("--service-account-signing-key-file={}", key.display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--token-auth-file={}", path.join("tokens.csv").display()))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path.join("apiserver.log")).unwrap())
            .spawn()
            .unwrap();
        let server = format!("https://127.0.0.1:{secure}");
        let kubeconfig = path.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&server, "admin-token-for-the-tests")).unwrap();
        let plane = ControlPlane { _dir: dir, kubeconfig, server, bin, etcd, apiserver };
        plane.wait_ready();
        plane
    }

    /// A kubeconfig (next to the admin's) that authenticates with `token`.
    pub fn kubeconfig_for(&self, token: &str) -> PathBuf {
        let file = self._dir.path().join(format!("kubeconfig-{token}"));
        std::fs::write(&file, kubeconfig_text(&self.server, token)).unwrap();
        file
    }

    /// A client of the API server as `admin`.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// Wait (up to 60 s) until `kubectl get --raw /readyz` says ok.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"], None);
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "kube-apiserver not ready in 60 s: {}", text(&out));
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(&self.bin.join("kubectl"), &self.kubeconfig, args, stdin)
    }

    pub fn install_crds(&self) {
        let out = self.kubectl(&["apply", "-f", "deploy/crds/meridian.yaml"], None);
        assert!(out.status.success(), "the API server refused the CRDs: {}", text(&out));
        let out = self.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                "crd/rolloutplans.meridian.dev",
                "crd/regions.meridian.dev",
                "crd/approvals.meridian.dev",
                "crd/rolloutcommands.meridian.dev",
            ],
            None,
        );
        assert!(out.status.success(), "CRDs not established: {}", text(&out));
    }
}

/// Run `kubectl` (the binary at `bin`) with `kubeconfig`, from the repository root, with
/// `stdin` as its input.
pub fn kubectl_with(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

fn kubeconfig_text(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"{server}\", insecure-skip-tls-verify: \
         true}}}}]\nusers: [{{name: u, user: {{token: {token}}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: u, \
         namespace: default}}}}]\ncurrent-context: t\n"
    )
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Records what it is asked to set; every target serves what it was last set to.
#[derive(Default)]
pub struct Recorder {
    pub traffic: std::sync::Mutex<std::collections::HashMap<(String, String), u32>>,
    /// Every set, in order: (region, service, percent).
    pub sent: std::sync::Mutex<Vec<(String, String, u32)>>,
}

impl meridian_core::ports::Actuator for Recorder {
    fn set_traffic<'a>(
        &'a self,
        _plan: &'a meridian_core::Plan,
        t: &'a meridian_core::ports::Target,
        percent: u32,
        _key: &'a str,
    ) -> meridian_core::ports::BoxFuture<'a, Result<(), meridian_core::ports::ActuationError>> {
        self.traffic.lock().unwrap().insert((t.region.clone(), t.service.clone()), percent);
        self.sent.lock().unwrap().push((t.region.clone(), t.service.clone(), percent));
        Box::pin(async { Ok(()) })
    }

    fn read_traffic<'a>(
        &'a self,
        _plan: &'a meridian_core::Plan,
        t: &'a meridian_core::ports::Target,
    ) -> meridian_core::ports::BoxFuture<'a, Result<Option<u32>, meridian_core::ports::ActuationError>> {
        let percent = self.traffic.lock().unwrap().get(&(t.region.clone(), t.service.clone())).copied();
        Box::pin(async move { Ok(percent) })
    }
}

pub const GATED: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: gated}
spec:
  services: [{name: signin}]
  regions: [{name: a}, {name: jp, approvals: [jp-regulator]}]
  waves:
    - {name: one, regions: [a], bake: 200ms}
    - {name: two, regions: [jp], bake: 200ms}
  steps: [50, 100]
  stepBake: 200ms
";

pub const JP_GO: &str = "apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata: {name: jp-letter}
spec: {flag: jp-regulator, grantedBy: ministry, reference: letter 17}
";

pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
