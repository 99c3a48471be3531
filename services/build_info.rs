//! Build script shared by the service crates (each names it with `build = "../build_info.rs"`):
//! sets `OFFPATH_COMMIT` for `offpath_build_info{commit}` to `git rev-parse --short HEAD`,
//! or to `$OFFPATH_COMMIT` when set (a build from a source archive), else `unknown`. Never
//! fails: a build outside git is a normal build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=OFFPATH_COMMIT");
    let commit = std::env::var("OFFPATH_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves (a commit, a checkout): both files are per worktree.
    for file in ["HEAD", "logs/HEAD"] {
        let path = git(&["rev-parse", "--path-format=absolute", "--git-path", file]);
        if let Some(path) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=OFFPATH_COMMIT={commit}");
}
