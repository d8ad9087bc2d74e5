//! `client demo`: the lab's output document, written from a real session.

use crate::helpers::{client_with_run_sh, free_port_base, stop_run_sh};

#[tokio::test]
async fn the_demo_writes_every_step_with_real_replies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = dir.path().join("cluster");
    let out = dir.path().join("OUTPUT.md");
    let mut demo = client_with_run_sh("demo", &cluster, free_port_base());
    demo.arg("--out").arg(&out);
    let output = tokio::task::spawn_blocking(move || demo.output())
        .await
        .expect("join")
        .expect("run the client");
    stop_run_sh(&cluster);
    assert!(
        output.status.success(),
        "demo failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The demo checks each reply itself; here, that the document shows them.
    let doc = std::fs::read_to_string(&out).expect("OUTPUT.md");
    for shown in [
        "$ ./run.sh status",
        r#"{"data":{"name":"Tux","price":15.99,"quantity":100}}"#,
        r#"{"data":{"order_number":0}}"#,
        r#"{"error":{"code":409,"#,
        r#"{"data":{"number":2,"name":"Tux","quantity":3}}"#,
        "$ ./run.sh kill order3",
        "30 answered 200, 0 failed",
        "$ ./run.sh start order3",
        r#""leader":2"#,
        r#"{"data":{"name":"Uno","price":"#,
        "$ ./run.sh stop",
    ] {
        assert!(
            doc.contains(shown),
            "{shown:?} is not in the document:\n{doc}"
        );
    }
}
