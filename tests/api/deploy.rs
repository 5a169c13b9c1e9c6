//! What `config/` deploys, checked by the tools that will read it:
//! `systemd-analyze verify` on the unit and its socket, `nginx -t` on the
//! site; and Lectern under socket activation, as lectern.socket starts it
//! (the socket it is passed as fd 3, and a clear error for a bad one).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::helpers::{conninfo, fresh_database, lectern_command, LecternProcess};

fn config_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with every `from` replaced, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in the file");
    text.replace(from, to)
}

/// A program on PATH or in the sbin directories, or a failed test saying
/// how to install it.
fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is missing: run tests/run as root, which installs it, or apt-get install {package}"
            )
        })
}

fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `systemd-analyze verify` on lectern.socket and lectern.service, copied
/// to `dir` with ExecStart pointing at a binary that exists (verify checks
/// that it does); what it says.
fn verify_units(dir: &Path, service: &str, socket: &str) -> Output {
    let service = replaced(
        service,
        "ExecStart=/usr/local/bin/lectern serve",
        &format!("ExecStart={} serve", env!("CARGO_BIN_EXE_lectern")),
    );
    std::fs::write(dir.join("lectern.service"), service).unwrap();
    std::fs::write(dir.join("lectern.socket"), socket).unwrap();
    Command::new(program("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(dir.join("lectern.socket"))
        .arg(dir.join("lectern.service"))
        .output()
        .expect("systemd-analyze runs")
}

#[test]
fn the_systemd_unit_and_its_socket_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let service = config_file("lectern.service");
    let socket = config_file("lectern.socket");
    assert!(
        service.contains("Requires=lectern.socket"),
        "the service runs with its socket"
    );
    assert!(
        socket.contains("ListenStream=127.0.0.1:4000"),
        "the socket is nginx's upstream"
    );

    let output = verify_units(dir.path(), &service, &socket);
    // verify exits 0 over settings it ignores: a warning is a failure too.
    assert!(
        output.status.success() && text_of(&output).trim().is_empty(),
        "systemd-analyze verify: {}\n{}",
        output.status,
        text_of(&output)
    );

    // The check sees a broken file: a misspelt key, an unknown value.
    let broken = verify_units(
        dir.path(),
        &replaced(&service, "Restart=always", "Restart=sometimes"),
        &socket,
    );
    assert!(text_of(&broken).contains("sometimes"), "{}", text_of(&broken));
    let broken = verify_units(
        dir.path(),
        &service,
        &replaced(&socket, "ListenStream=", "ListenStreem="),
    );
    assert!(!broken.status.success(), "{}", text_of(&broken));
}

/// `nginx -t` on the site file, included from a main configuration in
/// `dir` with a throwaway certificate in place of certbot's.
fn nginx_test(dir: &Path, site: &str) -> Output {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=example.com", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the `openssl` command runs (Debian: apt-get install openssl)");
        assert!(made.status.success(), "openssl req: {}", text_of(&made));
    }
    let site = replaced(
        site,
        "/etc/letsencrypt/live/example.com/fullchain.pem",
        &cert.display().to_string(),
    );
    let site = replaced(
        &site,
        "/etc/letsencrypt/live/example.com/privkey.pem",
        &key.display().to_string(),
    );
    std::fs::write(dir.join("lectern.conf"), site).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\n\
             events {{}}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   client_body_temp_path {d}/body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   include {d}/lectern.conf;\n\
             }}\n"
        ),
    )
    .unwrap();
    Command::new(program("nginx", "nginx"))
        .args(["-e", "stderr", "-t", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .expect("nginx runs")
}

#[test]
fn the_nginx_site_passes_nginx_t() {
    let dir = tempfile::tempdir().unwrap();
    let site = config_file("nginx.conf");
    assert!(
        site.contains("server 127.0.0.1:4000 "),
        "nginx's upstream is lectern.socket's address"
    );

    let output = nginx_test(dir.path(), &site);
    assert!(
        output.status.success() && text_of(&output).contains("test is successful"),
        "nginx -t: {}\n{}",
        output.status,
        text_of(&output)
    );

    let broken = nginx_test(
        dir.path(),
        &replaced(&site, "proxy_pass http://lectern;", "proxy_pass http://lectern"),
    );
    assert!(!broken.status.success(), "{}", text_of(&broken));
}

/// Waits for `child` to exit (killing it after a minute: a hang is a
/// failure, not a stuck test run); its status code and what it wrote.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    (status, text)
}

#[actix_rt::test]
async fn lectern_serves_on_the_socket_systemd_passes() {
    let database = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // systemd-socket-activate passes only the variables given with -E.
    let template = lectern_command(data_dir.path());
    let mut activate = Command::new(program("systemd-socket-activate", "systemd"));
    activate
        .current_dir(data_dir.path())
        .arg(format!("--listen=127.0.0.1:{port}"));
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            let (name, value) = (name.to_str().unwrap(), value.to_str().unwrap());
            activate.arg(format!("--setenv={name}={value}"));
        }
    }
    // Lectern's own setting binds a port of its choosing: the port it
    // reports shows which socket it serves on.
    assert!(
        activate
            .get_args()
            .any(|a| a == "--setenv=LECTERN__SERVER__BIND=127.0.0.1:0"),
        "{:?}",
        activate.get_args().collect::<Vec<_>>()
    );
    let mut child = activate
        .arg(format!("--setenv=DATABASE_URL={}", conninfo(&database)))
        .arg(env!("CARGO_BIN_EXE_lectern"))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate runs");

    // systemd-socket-activate starts Lectern on the first connection, which
    // waits in the socket's backlog meanwhile and is then answered.
    let mut connection = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(connection) => break connection,
            Err(_) if child.try_wait().unwrap().is_none() => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("systemd-socket-activate exited: {e}\n{}", finish(child).1),
        }
    };
    connection
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = String::new();
    let _ = connection.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer:?}");

    // systemd-socket-activate execs Lectern: the same process, now Lectern.
    let lectern = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(lectern, Signal::SIGTERM).unwrap();
    let (status, output) = finish(child);
    assert!(
        output.contains(&format!("Lectern listening on http://127.0.0.1:{port}")),
        "{output}"
    );
    assert_eq!(status, Some(0), "{output}");
}

/// `lectern serve` with `LISTEN_FDS` and with `LISTEN_PID` set to its own
/// pid (the shell's, which it execs), `prelude` run first; its status and
/// output. The database is unreachable: Lectern must stop before it.
fn serve_activated(prelude: &str, listen_fds: &str) -> (Option<i32>, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let lectern = lectern_command(data_dir.path());
    let mut sh = Command::new("sh");
    for (name, value) in lectern.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    let child = sh
        .current_dir(data_dir.path())
        .env("DATABASE_URL", "host=/nonexistent dbname=none")
        .env("LISTEN_FDS", listen_fds)
        .arg("-c")
        .arg(format!("{prelude} export LISTEN_PID=$$; exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_lectern"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child)
}

#[test]
fn a_bad_socket_from_systemd_is_a_clear_startup_error() {
    for (prelude, fds, expected) in [
        ("", "2", "LISTEN_FDS=2: Lectern takes exactly one socket"),
        ("", "one", "LISTEN_FDS=\"one\" is not a number of sockets"),
        // No fd 3 at all.
        ("", "1", "fd 3 was not passed"),
        ("exec 3</dev/null;", "1", "fd 3 is not a socket"),
    ] {
        let (status, output) = serve_activated(prelude, fds);
        assert_eq!(status, Some(1), "LISTEN_FDS={fds} after {prelude:?}: {output}");
        assert!(
            output.contains(&format!("lectern: socket activation (LISTEN_FDS): {expected}")),
            "LISTEN_FDS={fds} after {prelude:?}: {output}"
        );
    }
}

#[actix_rt::test]
async fn socket_activation_variables_for_another_process_are_ignored() {
    let database = fresh_database().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    // Inherited from a socket-activated parent (pid 1 here): not ours.
    let server = LecternProcess::start_with_env(
        data_dir,
        Some(&database),
        &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
    );
    let answer = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(answer.status(), 200);
}

/// One HTTP/1.1 response read off `stream` (a body with a Content-Length):
/// its head, header names lowercased, and its body.
fn read_response(stream: &mut std::net::TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&received)),
            ));
        }
        received.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&received).to_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse::<usize>().expect("a length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((head, body))
}

/// Waits up to 10 s for a line of the JSON log whose `msg` is `msg`.
fn wait_for_log_message(file: &Path, msg: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["msg"] == msg);
        if let Some(line) = found {
            return line;
        }
        assert!(Instant::now() < deadline, "no {msg:?} line in {}", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[actix_rt::test]
async fn on_sigterm_a_keep_alive_connection_gets_its_answer_with_connection_close() {
    let database = fresh_database().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let log_file = data_dir.path().join("log/lectern.log");
    // A drain longer than the default 1 s: this machine may be busy.
    let drain = Duration::from_secs(3);
    let mut server = LecternProcess::start_with_env(
        Arc::clone(&data_dir),
        Some(&database),
        &[("LECTERN__SERVER__DRAIN_SECS", "3")],
    );
    let address = server.address.strip_prefix("http://").unwrap().to_owned();
    let connect = || {
        let stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    };

    // A keep-alive connection: answered, and kept open.
    let mut kept = connect();
    kept.write_all(GET_HEALTHZ).unwrap();
    let (head, _) = read_response(&mut kept).unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // A request in flight: its body is not all sent yet.
    let mut in_flight = connect();
    in_flight
        .write_all(b"POST /webhooks/stripe HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\n{}")
        .unwrap();

    server.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    wait_for_log_message(&log_file, "stopping");

    // The kept connection's next request is answered, and then the server
    // closes the connection: the client's next request goes on a new one.
    kept.write_all(GET_HEALTHZ).unwrap();
    let (head, body) = read_response(&mut kept).expect("answered during the drain");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    let mut after = Vec::new();
    assert_eq!(kept.read_to_end(&mut after).expect("closed, not reset"), 0);
    // A new connection during the drain is served, once.
    let mut new = connect();
    new.write_all(GET_HEALTHZ).unwrap();
    let (head, _) = read_response(&mut new).expect("a new connection is served during the drain");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(signalled.elapsed() < drain, "all of this within the drain");

    // The request in flight completes after the drain, while the server stops.
    std::thread::sleep(drain.saturating_sub(signalled.elapsed()) + Duration::from_millis(500));
    in_flight.write_all(b"  ").unwrap();
    let (head, body) = read_response(&mut in_flight).expect("the request in flight is answered");
    // No stripe.webhook_secret here: the event is refused, once read.
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("stripe.webhook_secret"), "{body}");
    assert_eq!(server.wait_exit(Duration::from_secs(60)), Some(0));
}
