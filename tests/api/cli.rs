//! The command line: help for every command, `config show` with secrets
//! redacted, and one clear line with exit status 2 for a bad value or a
//! destination `content export` refuses.

use std::process::Output;

use crate::helpers::lectern_command;

fn lectern(args: &[&str], env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = lectern_command(dir.path());
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    (command.output().unwrap(), dir)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["config", "show", "--help"],
        &["content", "export", "--help"],
    ] {
        let (output, _dir) = lectern(args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage: lectern"),
            "{args:?}"
        );
    }
}

#[test]
fn an_unknown_command_or_flag_is_a_usage_error() {
    let (output, _dir) = lectern(&["serv"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unrecognized subcommand 'serv'"));
}

#[test]
fn a_bad_value_is_one_line_naming_the_key_and_its_source_with_status_2() {
    let cases = [
        (
            ("LECTERN__SERVER__BIND", "localhost"),
            "configuration error: server.bind (from environment variable LECTERN__SERVER__BIND): invalid socket address syntax",
        ),
        (
            ("LECTERN__DATABASE__POOL_SIZE", "many"),
            "configuration error: database.pool_size (from environment variable LECTERN__DATABASE__POOL_SIZE): invalid type: found string \"many\", expected usize",
        ),
        (
            ("LECTERN_ENV", "staging"),
            "configuration error: LECTERN_ENV (from the environment): unknown environment `staging`, expected development, test or production",
        ),
        (
            ("LECTERN__SERVER__BINDD", "127.0.0.1:1"),
            "configuration error: server.bindd (from environment variable LECTERN__SERVER__BINDD): unknown field: found `bindd`",
        ),
        (
            ("DATABASE_URL", "postgres://[::1"),
            "configuration error: database.url (from environment variable DATABASE_URL): not a PostgreSQL connection string",
        ),
    ];
    for ((key, value), expected) in cases {
        let (output, _dir) = lectern(&["config", "show"], &[(key, value)]);
        assert_eq!(output.status.code(), Some(2), "{key}={value}");
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with(&format!("lectern: {expected}")),
            "{key}={value}: {text}"
        );
    }
}

#[test]
fn a_bad_value_in_a_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/local.toml"),
        "[supervisor]\nmax_restarts = -1\n",
    )
    .unwrap();

    let output = lectern_command(dir.path())
        .args(["config", "show"])
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.starts_with(
            "lectern: configuration error: supervisor.max_restarts (from config/local.toml): invalid value"
        ),
        "{text}"
    );
}

#[test]
fn config_show_prints_the_effective_values_with_secrets_redacted() {
    let (output, _dir) = lectern(
        &["config", "show"],
        &[
            ("LECTERN__STRIPE__SECRET_KEY", "sk_test_verysecret"),
            ("LECTERN__STRIPE__WEBHOOK_SECRET", "whsec_alsosecret"),
            (
                "DATABASE_URL",
                "postgres://lectern:hunter2@db.internal:5432/lectern",
            ),
            ("LECTERN__SERVER__BIND", "127.0.0.1:4100"),
        ],
    );

    assert!(output.status.success(), "{}", stderr(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.starts_with("# environment: test"), "{shown}");
    assert!(shown.contains("bind = \"127.0.0.1:4100\""), "{shown}");
    assert!(
        shown.contains("url = \"postgres://lectern:***@db.internal:5432/lectern\""),
        "{shown}"
    );
    assert!(shown.contains("secret_key = \"<redacted>\""), "{shown}");
    for secret in ["sk_test_verysecret", "whsec_alsosecret", "hunter2"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[test]
fn content_export_needs_a_folder() {
    let (output, _dir) = lectern(&["content", "export"], &[]);

    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("the following required arguments were not provided:\n  <DIR>"),
        "{text}"
    );
}

#[test]
fn content_export_refuses_a_folder_with_files_a_file_and_a_link_with_status_2() {
    let work = tempfile::tempdir().unwrap();
    let full = work.path().join("content");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "mine").unwrap();
    let file = work.path().join("file.md");
    std::fs::write(&file, "mine").unwrap();
    let link = work.path().join("link");
    std::os::unix::fs::symlink(work.path().join("empty"), &link).unwrap();
    std::fs::create_dir(work.path().join("empty")).unwrap();

    for (dir, expected) in [
        (
            &full,
            "is not empty: export writes a new folder; give a missing or empty one, \
             or --force to replace its series/, episodes/, articles/ and media/ (nothing else in it is touched)",
        ),
        (&file, "is not a folder"),
        (&link, "is a symbolic link: give the folder it points to"),
    ] {
        // No database is set up: the destination is refused before one is needed.
        let (output, _dir) = lectern(&["content", "export", dir.to_str().unwrap()], &[]);

        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert_eq!(
            stderr(&output),
            format!("lectern: {} {expected}\n", dir.display())
        );
    }
    assert_eq!(std::fs::read_to_string(full.join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(work.path().join("empty")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        4,
        "no stage left beside them"
    );
}
