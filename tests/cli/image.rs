//! The container image, as far as this machine can check it without a container engine (none
//! runs here; `docker build` is the one step not run by the tests): the Dockerfile builds the
//! binary these tests run, its runtime base (distroless `cc`: glibc and libgcc, nothing else)
//! carries every library the binary links, and it agrees with `deploy/deployment.yaml` on the
//! user and the port.

use crate::support::repo_root;

fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).expect("the Dockerfile at the top level")
}

/// The libraries `gcr.io/distroless/cc-debian12` holds (libc6 and libgcc-s1).
const IN_DISTROLESS_CC: &[&str] =
    &["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libpthread.so.0", "libdl.so.2", "librt.so.1"];

#[test]
fn the_binary_links_only_what_the_runtime_image_has() {
    let out = std::process::Command::new("readelf")
        .args(["--dynamic", env!("CARGO_BIN_EXE_meridian")])
        .output()
        .expect("readelf (binutils) is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dynamic = String::from_utf8_lossy(&out.stdout).to_string();
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{dynamic}");
    for library in &needed {
        assert!(
            IN_DISTROLESS_CC.contains(library),
            "the binary needs {library}, which distroless/cc lacks: {needed:?}"
        );
    }
    assert!(dockerfile().contains("FROM gcr.io/distroless/cc-debian12"), "the runtime base changed: update this test");
}

#[test]
fn the_dockerfile_builds_this_binary_as_the_deployment_runs_it() {
    let docker = dockerfile();
    // It builds the package and binary these tests run, locked, in release.
    let manifest = std::fs::read_to_string(repo_root().join("crates/meridian-cli/Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"meridian-cli\"") && manifest.contains("name = \"meridian\""), "{manifest}");
    assert!(docker.contains("cargo build --release --locked -p meridian-cli --bin meridian"), "{docker}");
    assert!(docker.contains("ENTRYPOINT [\"/usr/local/bin/meridian\"]"), "{docker}");
    // Its toolchain is at least the workspace's minimum.
    let workspace = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let minimum = workspace.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    let pinned = docker.lines().find_map(|l| l.strip_prefix("ARG RUST_VERSION=")).expect("ARG RUST_VERSION");
    let version = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(version(pinned) >= version(minimum), "the image builds with {pinned}, the workspace needs {minimum}");
    // The user is numeric and the one the Deployment runs as; the port is the one it serves.
    let deployment = std::fs::read_to_string(repo_root().join("deploy/deployment.yaml")).unwrap();
    assert!(docker.contains("USER 65532:65532"), "{docker}");
    assert!(deployment.contains("runAsUser: 65532") && deployment.contains("runAsGroup: 65532"), "{deployment}");
    assert!(docker.contains("EXPOSE 7070"), "{docker}");
    assert!(deployment.contains("0.0.0.0:7070") && deployment.contains("containerPort: 7070"), "{deployment}");
}
