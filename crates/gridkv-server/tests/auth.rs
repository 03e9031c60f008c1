//! Client authentication against real `gridkv node` processes (issue 16,
//! "Clients"): `--requirepass`, `--acl-file` users with key patterns and
//! command categories, `AUTH` in both forms, `HELLO ... AUTH`, `ACL`
//! commands, and the HTTP admin's token.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::{Node, ONE_COPY, Resp, http_request, run_to_exit};

const NOAUTH: &str = "-NOAUTH Authentication required.";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.";
const NOKEY: &str = "-NOPERM No permissions to access a key";

/// A file under the test temp dir holding `text`.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("auth-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn one_node_with(extra: &[&str]) -> Node {
    let mut args = ONE_COPY.to_vec();
    args.extend_from_slice(extra);
    Node::start("n1", &args)
}

fn resp(node: &Node) -> Resp<TcpStream> {
    Resp::new(node.raw())
}

/// A line of `/metrics` for `name` (with its labels), or "".
fn metric(node: &Node, name: &str) -> String {
    let (_, text) = node.http_get("/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn requirepass_noauth_before_auth_and_wrong_password() {
    let node = one_node_with(&["--requirepass", "s3cret"]);
    let mut c = resp(&node);
    // Only AUTH, HELLO, PING and QUIT answer before AUTH.
    assert_eq!(c.cmd(&["PING"]), "+PONG");
    for refused in [
        &["GET", "k"][..],
        &["SET", "k", "v"],
        &["MGET", "a", "b"],
        &["DBSIZE"],
        &["INFO"],
        &["CONFIG", "GET", "*"],
        &["ACL", "WHOAMI"],
        &["NOSUCHCOMMAND"],
        &["GET"],
    ] {
        assert_eq!(c.cmd(refused), NOAUTH, "{refused:?}");
    }
    assert!(
        c.cmd(&["HELLO", "3"])
            .starts_with("-NOAUTH HELLO must be called")
    );
    assert_eq!(c.cmd(&["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "default", "wrong"]), WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "nobody", "s3cret"]), WRONGPASS);
    assert_eq!(c.cmd(&["GET", "k"]), NOAUTH, "still not logged in");
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), "+OK");
    assert_eq!(c.cmd(&["SET", "k", "v"]), "+OK");
    assert_eq!(c.cmd(&["GET", "k"]), "v");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), "default");
    // A wrong AUTH later leaves the connection logged in.
    assert_eq!(c.cmd(&["AUTH", "nope"]), WRONGPASS);
    assert_eq!(c.cmd(&["GET", "k"]), "v");
    // A pipelined AUTH applies to the commands after it.
    let mut p = resp(&node);
    let pipeline = "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    std::io::Write::write_all(&mut p.stream_mut(), pipeline.as_bytes()).unwrap();
    assert_eq!(p.reply().unwrap(), "+OK");
    assert_eq!(p.reply().unwrap(), "v");
    // Counted: four failures, ten NOAUTH from the gate.
    assert_eq!(
        metric(&node, "gridkv_resp_auth_failures_total"),
        "gridkv_resp_auth_failures_total 4"
    );
    assert_eq!(
        metric(&node, "gridkv_resp_noauth_total"),
        "gridkv_resp_noauth_total 10"
    );
    // redis-rs with the password in the URL.
    let client = redis::Client::open(format!("redis://:s3cret@{}/", node.resp)).unwrap();
    let mut con = client.get_connection().unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    let bad = redis::Client::open(format!("redis://:nope@{}/", node.resp)).unwrap();
    assert!(
        bad.get_connection().is_err(),
        "a wrong password fails the connection"
    );
}

const USERS: &str = "\
# users of the tests
user default off
user admin on >adminpw ~* +@all
user app on >apppw #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~app:* ~shared +@read +@write -del +ping +acl|whoami
user reader on >readpw ~* +@read
user gone off >gonepw ~* +@all
user open on nopass ~public:* +get
";

#[test]
fn acl_users_key_patterns_and_categories_per_command() {
    let acl = file("users.acl", USERS);
    let node = one_node_with(&["--acl-file", acl.to_str().unwrap()]);
    let mut c = resp(&node);
    assert_eq!(c.cmd(&["GET", "k"]), NOAUTH, "default is off");
    assert_eq!(c.cmd(&["AUTH", "x"]), WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "gone", "gonepw"]), WRONGPASS, "off");
    assert_eq!(c.cmd(&["AUTH", "app", "wrong"]), WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "app", "apppw"]), "+OK");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), "app");
    // Each key of a multi-key command is checked, wherever it is.
    for (cmd, want) in [
        (&["SET", "app:1", "a"][..], "+OK"),
        (&["SET", "shared", "s"], "+OK"),
        (&["SET", "other", "x"], NOKEY),
        (&["GET", "other"], NOKEY),
        (&["MSET", "app:2", "b", "shared", "t"], "+OK"),
        (&["MSET", "app:2", "b", "other", "y"], NOKEY),
        (&["MSET", "other", "y", "app:2", "b"], NOKEY),
        (&["MSET", "app:3", "other"], "+OK"),
        (&["MGET", "app:1", "shared"], "[a, t]"),
        (&["MGET", "app:1", "other"], NOKEY),
        (&["MGET", "other", "app:1"], NOKEY),
        (&["EXISTS", "app:1", "app:9"], ":1"),
        (&["EXISTS", "app:1", "other"], NOKEY),
        (&["EXPIRE", "other", "10"], NOKEY),
        (&["TTL", "other"], NOKEY),
        (&["PERSIST", "app:1"], ":0"),
        (
            &["DEL", "app:1"],
            "-NOPERM User app has no permissions to run the 'del' command",
        ),
        (&["PING"], "+PONG"),
        (&["DBSIZE"], ":4"),
        (
            &["ACL", "LIST"],
            "-NOPERM User app has no permissions to run the 'acl|list' command",
        ),
        (
            &["CONFIG", "GET", "maxmemory"],
            "-NOPERM User app has no permissions to run the 'config|get' command",
        ),
        (
            &["INFO"],
            "-NOPERM User app has no permissions to run the 'info' command",
        ),
    ] {
        assert_eq!(c.cmd(cmd), want, "app: {cmd:?}");
    }
    // The second password (given as its sha256) works too.
    assert_eq!(c.cmd(&["AUTH", "app", "password"]), "+OK");
    // The reader: every key, only @read.
    assert_eq!(c.cmd(&["AUTH", "reader", "readpw"]), "+OK");
    assert_eq!(c.cmd(&["GET", "other"]), "(nil)");
    assert_eq!(c.cmd(&["MGET", "app:1", "other"]), "[a, (nil)]");
    for write in [
        &["SET", "k", "v"][..],
        &["MSET", "k", "v"],
        &["DEL", "k"],
        &["EXPIRE", "k", "1"],
        &["PEXPIRE", "k", "1"],
        &["PERSIST", "k"],
    ] {
        let name = write[0].to_ascii_lowercase();
        assert_eq!(
            c.cmd(write),
            format!("-NOPERM User reader has no permissions to run the '{name}' command")
        );
    }
    assert!(c.cmd(&["PING"]).starts_with("-NOPERM"), "PING is not @read");
    // A nopass user gets in with any password, and only to its keys.
    assert_eq!(c.cmd(&["AUTH", "open", "whatever"]), "+OK");
    assert_eq!(c.cmd(&["GET", "public:x"]), "(nil)");
    assert_eq!(c.cmd(&["GET", "app:1"]), NOKEY);
    // ACL LIST shows hashes, never the passwords.
    assert_eq!(c.cmd(&["AUTH", "admin", "adminpw"]), "+OK");
    let list = c.cmd(&["ACL", "LIST"]);
    assert!(
        !list.contains("apppw") && !list.contains("adminpw"),
        "{list}"
    );
    let app_hash = sha256_hex("apppw");
    assert!(
        list.contains(&format!(
            "user app on #{app_hash} #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~app:* ~shared -@all +@read +@write -del +ping +acl|whoami"
        )),
        "{list}"
    );
    assert!(list.contains("user default off -@all"), "{list}");
    assert!(c.cmd(&["ACL", "CAT"]).contains("admin"));
    assert_eq!(
        c.cmd(&["ACL", "CAT", "admin"]),
        "[config|get, acl|list, acl|load]"
    );
    let denied = metric(&node, "gridkv_resp_acl_denied_total{reason=\"key\"}");
    assert_eq!(denied, "gridkv_resp_acl_denied_total{reason=\"key\"} 10");
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn hello_auth_logs_in_and_switches_protocol() {
    let acl = file("hello.acl", "user app on >pw ~* +@all\n");
    let node = one_node_with(&["--acl-file", acl.to_str().unwrap()]);
    let mut c = resp(&node);
    assert_eq!(c.cmd(&["HELLO", "3", "AUTH", "app", "bad"]), WRONGPASS);
    assert_eq!(c.cmd(&["GET", "k"]), NOAUTH);
    let hello = c.cmd(&["HELLO", "3", "AUTH", "app", "pw", "SETNAME", "tester"]);
    assert!(hello.starts_with("[server, gridkv, version, "), "{hello}");
    assert!(hello.contains("proto, :3"), "{hello}");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), "tester");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), "app");
    // RESP3 from here: a null is `_`.
    assert_eq!(c.cmd(&["GET", "nothing"]), "(nil)");
    // redis-rs in RESP3 with a user and password (it sends HELLO 3 AUTH).
    let url = format!("redis://app:pw@{}/?protocol=resp3", node.resp);
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("1").query(&mut con).unwrap();
    let me: String = redis::cmd("ACL").arg("WHOAMI").query(&mut con).unwrap();
    assert_eq!(me, "app");
}

#[test]
fn acl_load_rereads_the_file_and_keeps_it_when_broken() {
    let acl = file(
        "load.acl",
        "user admin on >a ~* +@all\nuser app on >pw ~* +@all\n",
    );
    let node = one_node_with(&["--acl-file", acl.to_str().unwrap()]);
    let mut admin = resp(&node);
    assert_eq!(admin.cmd(&["AUTH", "admin", "a"]), "+OK");
    let mut app = resp(&node);
    assert_eq!(app.cmd(&["AUTH", "app", "pw"]), "+OK");
    assert_eq!(app.cmd(&["SET", "k", "v"]), "+OK");
    // A broken file: refused with its line, the users in force kept.
    std::fs::write(&acl, "user admin on >a ~* +@all\nuser app on >pw +@bogus\n").unwrap();
    let refused = admin.cmd(&["ACL", "LOAD"]);
    assert!(
        refused.starts_with("-ERR ") && refused.contains("load.acl:2: unknown category 'bogus'"),
        "{refused}"
    );
    assert_eq!(app.cmd(&["SET", "k", "v"]), "+OK");
    // A good one applies at each connection's next command.
    std::fs::write(
        &acl,
        "user admin on >a ~* +@all\nuser app on >pw ~* +@read\n",
    )
    .unwrap();
    assert_eq!(admin.cmd(&["ACL", "LOAD"]), "+OK");
    assert_eq!(
        app.cmd(&["SET", "k", "v"]),
        "-NOPERM User app has no permissions to run the 'set' command"
    );
    assert_eq!(app.cmd(&["GET", "k"]), "v");
    assert_eq!(
        metric(&node, "gridkv_acl_reloads_total{result=\"failed\"}"),
        "gridkv_acl_reloads_total{result=\"failed\"} 1"
    );
}

#[test]
fn bad_security_settings_stop_the_start_with_their_reason() {
    let broken = file(
        "broken.acl",
        "user a on >x ~* +@all\n\nuser b on ~* +@nosuch\n",
    );
    let conflict = file("conflict.acl", "user default on >x ~* +@all\n");
    let broken_arg = broken.to_str().unwrap();
    let conflict_arg = conflict.to_str().unwrap();
    for (args, words) in [
        (
            vec!["--acl-file", broken_arg],
            format!("{broken_arg}:3: unknown category 'nosuch'"),
        ),
        (
            vec!["--acl-file", conflict_arg, "--requirepass", "pw"],
            "--requirepass".to_owned(),
        ),
        (
            vec!["--resp-tls"],
            "needs the node's certificate".to_owned(),
        ),
        (
            vec!["--tls-cert", "x.pem", "--tls-key", "x.key"],
            "go together".to_owned(),
        ),
        (
            vec!["--admin-token", "t", "--admin-token-file", "t.txt"],
            "not both".to_owned(),
        ),
    ] {
        let mut all = vec![
            "node",
            "--id",
            "n1",
            "--resp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ];
        all.extend(args.iter().copied());
        let (status, _, stderr) = run_to_exit(&all, Duration::from_secs(20));
        assert!(!status.success(), "{args:?} started");
        assert!(stderr.contains(&words), "{args:?}: {stderr}");
    }
}

fn http(node: &Node, method: &str, path: &str, token: Option<&str>) -> u16 {
    let header = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = header
        .as_deref()
        .map(|h| vec![("Authorization", h)])
        .unwrap_or_default();
    http_request(node.http, method, path, &headers).unwrap().0
}

#[test]
fn admin_token_guards_the_admin_off_loopback() {
    // Bound to every address: /cluster, /metrics and changes need the token.
    let node = one_node_with(&["--http", "0.0.0.0:0", "--admin-token", "t0ken"]);
    // /health answers (200 or 503: readiness), never refused.
    assert!([200, 503].contains(&http(&node, "GET", "/health", None)));
    assert_eq!(http(&node, "GET", "/live", None), 200);
    assert_eq!(http(&node, "GET", "/cluster", None), 401);
    assert_eq!(http(&node, "GET", "/cluster", Some("wrong")), 401);
    assert_eq!(http(&node, "GET", "/cluster", Some("t0ken")), 200);
    assert_eq!(http(&node, "GET", "/metrics", None), 401);
    assert_eq!(http(&node, "GET", "/metrics", Some("t0ken")), 200);
    // A state-changing request: refused without the token; with it, it
    // reaches the router (which has no such route: 405).
    assert_eq!(http(&node, "POST", "/cluster", None), 401);
    assert_eq!(http(&node, "POST", "/cluster", Some("t0ken")), 405);
    let (_, body) = http_request(node.http, "DELETE", "/cluster", &[]).unwrap();
    assert!(body.contains("\"error\""), "{body}");
    // Without a token off loopback: refused, with a reason.
    let bare = one_node_with(&["--http", "0.0.0.0:0"]);
    let (code, body) = http_request(bare.http, "GET", "/cluster", &[]).unwrap();
    assert_eq!(code, 403);
    assert!(body.contains("--admin-token"), "{body}");
    assert_eq!(http(&bare, "POST", "/x", None), 403);
    assert!([200, 503].contains(&http(&bare, "GET", "/health", None)));
    assert_eq!(http(&bare, "GET", "/live", None), 200);
    assert!(
        bare.log().contains("without --admin-token"),
        "{}",
        bare.log()
    );
    // On loopback: reads are open; changes need the token if one is set.
    let local = one_node_with(&["--admin-token", "t0ken"]);
    assert_eq!(http(&local, "GET", "/cluster", None), 200);
    assert_eq!(http(&local, "POST", "/cluster", None), 401);
    assert_eq!(http(&local, "POST", "/cluster", Some("t0ken")), 405);
    let refusals = metric(&local, "gridkv_http_admin_refusals_total");
    assert_eq!(refusals, "gridkv_http_admin_refusals_total 1");
    // The token may come from a file.
    let token = file("token", "from-file\n");
    let filed = one_node_with(&[
        "--http",
        "0.0.0.0:0",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(http(&filed, "GET", "/cluster", Some("from-file")), 200);
    assert_eq!(http(&filed, "GET", "/cluster", Some("from")), 401);
}
