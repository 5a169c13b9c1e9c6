//! A new operator's first hour, through the binary alone: started in an
//! empty directory with no `config/`, no `LECTERN_ENV` and a port of its
//! own, it runs the development profile built into it (demo content, an
//! admin link, a terminal log) and every link it gives follows that port.
//! A second server on the same data directory is refused at once, a
//! one-off command says it attached, and the log files are not for
//! everyone to read.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;

/// The binary as someone who downloaded it runs it: nothing of the test
/// harness's configuration.
fn bare_lectern(dir: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lectern"));
    command
        .current_dir(dir)
        .env_remove("LECTERN_ENV")
        .env_remove("DATABASE_URL")
        .env("LECTERN__SERVER__BIND", format!("127.0.0.1:{port}"));
    command
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Lines of a child's standard error, as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    lines
}

/// Waits up to 60 s for a line holding `needle`; every line read meanwhile.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> (Option<String>, Vec<String>) {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return (Some(line), seen),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    (None, seen)
}

#[actix_rt::test]
async fn the_binary_alone_in_an_empty_directory_serves_the_demo_site_on_the_port_it_was_given() {
    // Under /tmp so that the postgres user can reach it when we are root.
    let dir = tempfile::Builder::new()
        .prefix("lectern-first-hour-")
        .tempdir_in("/tmp")
        .unwrap();
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let mut child = bare_lectern(dir.path(), port)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let (listening, _) = wait_for_line(&stdout, "Lectern listening on");
    assert_eq!(
        listening.as_deref(),
        Some(format!("Lectern listening on {origin}").as_str())
    );

    // The built-in development profile: a terminal log, with the admin link.
    let (admin_line, _) = wait_for_line(&stderr, "demo administrator");
    let admin_line = admin_line.expect("the terminal log gives the demo admin link");
    let link = admin_line
        .split_whitespace()
        .find(|word| word.contains("/login/magic/"))
        .expect("a login link")
        .trim_matches(|c| c == ',' || c == '"');
    assert!(
        link.starts_with(&format!("{origin}/login/magic/")),
        "the link follows the port: {link}"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let opened = client.get(link).send().await.unwrap();
    assert!(
        opened.status().is_success() || opened.status().is_redirection(),
        "the admin link works: {}",
        opened.status()
    );

    // Demo content, and the addresses the site gives out carry the port.
    let home = client.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("href=\"/episodes/"));
    let episode = client
        .get(format!("{origin}/episodes/ownership-and-borrowing"))
        .send()
        .await
        .unwrap();
    assert_eq!(episode.status(), 200);
    assert!(episode.text().await.unwrap().contains("Ownership and borrowing"));
    let sitemap = client
        .get(format!("{origin}/sitemap.xml"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sitemap.contains(&format!("<loc>{origin}/episodes/ownership-and-borrowing</loc>")));
    let robots = client.get(format!("{origin}/robots.txt")).send().await.unwrap();
    assert_eq!(robots.status(), 200);
    assert!(robots
        .text()
        .await
        .unwrap()
        .contains(&format!("Sitemap: {origin}/sitemap.xml")));
    let favicon = client.get(format!("{origin}/favicon.ico")).send().await.unwrap();
    assert_eq!(favicon.status(), 200);
    assert_eq!(favicon.headers()["content-type"], "image/x-icon");
    assert_eq!(
        &favicon.bytes().await.unwrap()[..4],
        &[0, 0, 1, 0],
        "an icon file"
    );

    // A second server on the same data directory is refused at once.
    let second = bare_lectern(dir.path(), free_port()).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(
        refusal.contains(&format!("in use by another `lectern serve` (pid {})", child.id())),
        "{refusal}"
    );
    // A one-off command attaches to the running server's PostgreSQL, and says so.
    let admin = bare_lectern(dir.path(), port)
        .args(["user", "create-admin", "second@lectern.example"])
        .output()
        .unwrap();
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let said = String::from_utf8_lossy(&admin.stderr);
    assert!(said.contains("attached to the embedded PostgreSQL"), "{said}");
    assert!(!said.contains("embedded PostgreSQL started"), "{said}");
    assert!(String::from_utf8_lossy(&admin.stdout).contains(&format!("{origin}/login/magic/")));

    // Logs: the owner and the group read them, nobody else.
    for log in ["var/log/lectern.log", "var/log/postgres.log"] {
        let mode = std::fs::metadata(dir.path().join(log))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{log}");
    }

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_config_dir_that_does_not_exist_is_refused_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = bare_lectern(dir.path(), 0)
        .args(["--config-dir", "/nonexistent", "config", "show"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        said.trim(),
        "lectern: --config-dir /nonexistent: no such directory (leave it out to use the built-in configuration)"
    );
}

#[test]
fn the_production_profile_will_not_run_without_the_sites_public_address() {
    let dir = tempfile::tempdir().unwrap();
    for public_url in [None, Some("http://127.0.0.1:4000"), Some("http://localhost")] {
        let mut command = bare_lectern(dir.path(), 0);
        command.env("LECTERN_ENV", "production").arg("serve");
        if let Some(url) = public_url {
            command.env("LECTERN__SERVER__PUBLIC_URL", url);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{public_url:?}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.starts_with("lectern: configuration error: server.public_url")
                && said.contains("LECTERN__SERVER__PUBLIC_URL"),
            "{public_url:?}: {said}"
        );
    }
}

#[test]
fn config_show_hides_a_password_given_in_the_database_urls_query_string() {
    let dir = tempfile::tempdir().unwrap();
    let output = bare_lectern(dir.path(), 0)
        .args(["config", "show"])
        .env(
            "DATABASE_URL",
            "postgres://app@db/lectern?password=s3cret&sslmode=require",
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("postgres://app@db/lectern?password=***&sslmode=require"));
}
