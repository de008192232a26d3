//! The `proxy` binary's answers to bad command lines and unreachable backends.

use std::process::Command;

fn proxy(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(args)
        .output()
        .expect("run the proxy binary");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_flag_prints_the_error_and_the_usage() {
    let (code, stderr) = proxy(&["--backend", "127.0.0.1:1", "--speed", "11"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: unknown flag \"--speed\"\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("usage: proxy --backend HOST:PORT"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_backend_is_named() {
    // Bind and drop a listener to find a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = format!("127.0.0.1:{port}");
    let (code, stderr) = proxy(&["--listen", "127.0.0.1:0", "--backend", &backend]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("error: backend {backend} is unreachable: ")),
        "{stderr}"
    );
}

#[test]
fn help_goes_to_stdout() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--move-every-ms N"));
}
