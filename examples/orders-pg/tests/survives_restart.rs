//! The order book on PostgreSQL, run for real: two runs of the `orders-pg` binary against one
//! database of a private server; the second sees the first one's data.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::process::Command;

fn run(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orders-pg"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_second_run_sees_the_first_runs_orders() {
    let Some(server) = cell_postgres::testing::shared() else {
        return;
    };
    let url = server.database().await;
    let first = run(&url, &[]);
    assert!(first.contains("first run: created customer Ada"), "{first}");
    assert!(first.contains("placed order #1"), "{first}");
    let second = run(&url, &[]);
    assert!(!second.contains("first run"), "{second}");
    assert!(second.contains("placed order #2"), "{second}");
    assert!(
        second.contains("Ada has 2 order(s), 900 cents in total; 998 notebooks left"),
        "{second}"
    );
}

#[test]
fn schema_prints_the_ddl() {
    let out = run("postgres://nobody@127.0.0.1:1/none", &["schema"]);
    assert!(out.contains("CREATE TABLE \"orders\""), "{out}");
    assert!(out.contains("\"id\" BIGSERIAL PRIMARY KEY"), "{out}");
    assert!(
        out.contains("CREATE INDEX \"orders_customer_idx\""),
        "{out}"
    );
}

#[test]
fn without_database_url_it_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_orders-pg"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("$DATABASE_URL is not set"), "{stderr}");
}
