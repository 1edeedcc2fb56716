//! `meridian crds`: print the CustomResourceDefinitions of `RolloutPlan`, `Region` and
//! `Approval` (the same YAML as `deploy/crds/meridian.yaml`), for `kubectl apply -f -`.

pub fn run() -> i32 {
    match meridian_kube::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            crate::exit::OK
        }
        Err(e) => {
            eprintln!("meridian crds: failed to render the definitions: {e}");
            crate::exit::FAILED
        }
    }
}
