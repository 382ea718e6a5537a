//! What the repository ships for running on many hosts: the Kubernetes
//! manifests validate against the Kubernetes schemas offline
//! (`kubernetes-validate` from PyPI, which `.ci/run` installs), and the
//! container image of this build is checked by `tools/image-check`
//! (podman builds it FROM scratch, exports it, and its binary completes a
//! self-loop under chroot).

use std::process::Command;

/// The Kubernetes version the manifests are written for (README).
const KUBERNETES: &str = "1.31.0";

#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let dir = format!("{}/deploy/kubernetes", env!("CARGO_MANIFEST_DIR"));
    let mut manifests: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 3, "{manifests:?}");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES])
        .args(&manifests)
        .output();
    let Ok(out) = out else {
        println!(
            "skipped: kubernetes-validate is not installed here (pip install kubernetes-validate)"
        );
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        manifests.len(),
        "{text}"
    );
}

#[test]
fn the_image_builds_from_scratch_and_its_binary_runs() {
    let script = format!("{}/tools/image-check", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .args([&script, env!("CARGO_BIN_EXE_tcpkali")])
        .output()
        .expect("tools/image-check");
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(77) {
        println!("skipped: {}", text.trim());
        return;
    }
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("image-check: PASS"), "{text}");
}
