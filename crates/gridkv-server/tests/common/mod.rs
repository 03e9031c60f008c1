//! A harness for end-to-end tests: real `gridkv node` processes on
//! loopback, every address on port 0, found from the ready line each node
//! prints once bound.
//!
//! A [`Node`] owns its child process and kills it when dropped (kill, then
//! wait), so nothing outlives a test, even one that panics. A node's
//! stderr goes to a log file under Cargo's test temp dir (a file never
//! fills as a pipe would); when a test panics, each node prints its log's
//! tail so the failure comes with the servers' side of the story.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cluster may take to become healthy and agree on its members
/// (generous: the test machine has two busy cores).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(45);
/// The read timeout of every client socket, so a server that stops
/// answering fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `check` every 100 ms until it returns `Ok`; panics after
/// `timeout` with `what` and the last `Err` (what was seen instead).
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Runs `gridkv` with `args` and no cluster expected: waits up to
/// `timeout` for it to exit and returns its status, stdout and stderr. A
/// process still running then is killed and the test fails.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = gridkv_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gridkv");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for gridkv") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gridkv {args:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Error messages are small: they fit in the pipes, so the child could
    // not block writing them before it exited.
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status, stdout, stderr)
}

/// The `gridkv` binary, with no `GRIDKV_*` variable inherited from the
/// environment running the tests (one would change what the flags mean).
fn gridkv_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridkv"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GRIDKV_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A running `gridkv node` process.
pub struct Node {
    /// Its node id.
    pub id: String,
    /// Its cluster transport address (what other nodes seed from).
    pub cluster: SocketAddr,
    /// Its RESP address.
    pub resp: SocketAddr,
    /// Its HTTP admin address.
    pub http: SocketAddr,
    child: Child,
    /// Set once the child has been reaped.
    exit: Option<ExitStatus>,
    log: PathBuf,
}

impl Node {
    /// Starts `gridkv node --id ID` on loopback port 0 everywhere (except
    /// where `extra` names an address flag itself), with `extra` flags, and
    /// waits for its ready line.
    pub fn start(id: &str, extra: &[&str]) -> Node {
        Node::start_env(id, extra, &[])
    }

    /// As [`Node::start`], with `env` variables set for the process (on top
    /// of the inherited environment, less `GRIDKV_*`): `LD_PRELOAD` of
    /// libfaketime with `FAKETIME`, say.
    pub fn start_env(id: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs");
        std::fs::create_dir_all(&dir).expect("create the log dir");
        let log = dir.join(format!(
            "{}-{}-{id}.log",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&log).expect("create the node log");
        let mut args = vec!["node", "--id", id];
        for flag in ["--listen", "--resp", "--http"] {
            if !extra.contains(&flag) {
                args.extend([flag, "127.0.0.1:0"]);
            }
        }
        let mut child = gridkv_command()
            .args(args)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn gridkv node");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then drains stdout until the child exits,
        // so the pipe never fills whatever the node prints later.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let fail = |mut child: Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("node {id}: {why}; its stderr:\n{text}");
        };
        let Ok(line) = rx.recv_timeout(READY_TIMEOUT) else {
            fail(child, format!("no ready line within {READY_TIMEOUT:?}"));
        };
        let Some(fields) = parse_ready_line(&line) else {
            fail(child, format!("unexpected first line {line:?}"));
        };
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        if get("id").as_deref() != Some(id) {
            fail(child, format!("ready line names another id: {line:?}"));
        }
        let addr = |k: &str| get(k).and_then(|v| v.parse::<SocketAddr>().ok());
        let (Some(cluster), Some(resp), Some(http)) = (addr("cluster"), addr("resp"), addr("http"))
        else {
            fail(child, format!("ready line lacks an address: {line:?}"));
        };
        Node {
            id: id.to_owned(),
            cluster,
            resp,
            http,
            child,
            exit: None,
            log,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new RESP connection, with read and write timeouts.
    pub fn con(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.resp)).expect("client");
        let con = client
            .get_connection_with_timeout(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {} (node {}): {e}", self.resp, self.id));
        con.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        con.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        con
    }

    /// A raw TCP connection to the RESP port, with timeouts.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.resp, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s
    }

    /// `GET path` on the admin port: the status code and body.
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.http, path)
    }

    /// `/health`'s status code (0 if the request itself failed).
    pub fn health(&self) -> u16 {
        self.http_get("/health").map_or(0, |(code, _)| code)
    }

    /// The `/cluster` document.
    pub fn cluster_view(&self) -> Result<serde_json::Value, String> {
        let (code, body) = self.http_get("/cluster").map_err(|e| e.to_string())?;
        if code != 200 {
            return Err(format!("/cluster answered {code}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// `(state, ring_state)` of member `id` in this node's `/cluster`.
    pub fn sees(&self, id: &str) -> Result<(String, String), String> {
        let view = self.cluster_view()?;
        let member = view["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == id))
            .ok_or_else(|| format!("{id} is not a member: {view}"))?;
        let field = |k: &str| member[k].as_str().unwrap_or_default().to_owned();
        Ok((field("state"), field("ring_state")))
    }

    /// Waits up to `timeout` until this node's `/cluster` shows member `id`
    /// in one of `states` (`suspect`, `down`, ...); returns the state seen.
    pub fn wait_sees(&self, id: &str, states: &[&str], timeout: Duration) -> String {
        eventually(
            &format!("{} to see {id} as one of {states:?}", self.id),
            timeout,
            || {
                let (state, ring) = self.sees(id)?;
                if states.contains(&state.as_str()) {
                    Ok(state)
                } else {
                    Err(format!("{state}, ring state {ring}"))
                }
            },
        )
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Sends SIGTERM: the node leaves gracefully, then exits.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still
    /// running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while self.exit.is_none() && start.elapsed() < timeout {
            self.exit = self.child.try_wait().expect("try_wait");
            if self.exit.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.exit
    }

    /// What the node has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- node {} (resp {}, http {}, cluster {}), last lines of {}:",
                self.id,
                self.resp,
                self.http,
                self.cluster,
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `gridkv ready: id=ID cluster=IP:PORT resp=IP:PORT http=IP:PORT` as
/// `(field, value)` pairs; `None` for any other line.
fn parse_ready_line(line: &str) -> Option<Vec<(String, String)>> {
    line.strip_prefix("gridkv ready: ")?
        .split_whitespace()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A minimal HTTP/1.1 `GET` over a std socket: the status code and body
/// (chunked bodies decoded).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, &[])
}

/// A minimal HTTP/1.1 request with no body and extra `headers`, over a
/// std socket: the status code and body (chunked bodies decoded).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// Flags of a one-node cluster that keeps one copy of each key.
pub const ONE_COPY: &[&str] = &[
    "--replicas",
    "1",
    "--write-quorum",
    "1",
    "--read-quorum",
    "1",
];

/// Whether `python3` can import every module of `imports` (a Python
/// import line's names, `redis, django`); `false`, with a notice naming
/// `install`, lets the calling test pass without them, unless the
/// environment variable `required` is `1` (CI sets it after installing).
pub fn python_has(imports: &str, required: &str, install: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {imports}")])
        .output()
        .is_ok_and(|out| out.status.success());
    let must = std::env::var(required).is_ok_and(|v| v == "1");
    if !probe && !must {
        eprintln!(
            "SKIPPED: python3 cannot import {imports} (`{install}`; {required}=1 makes this \
             a failure)"
        );
    }
    probe || must
}

/// Runs `python3 script args...`; panics with its output unless it exits
/// 0 with `ok` as its last line.
pub fn run_python(script: &std::path::Path, args: &[String], install: &str) {
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); install python3 and `{install}`"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{} failed ({}); if a module is missing: `{install}`\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display(),
        out.status
    );
}

/// One node keeping one copy of each key (N = W = R = 1).
pub fn one_node() -> Node {
    Cluster::start(1, ONE_COPY).nodes.pop().expect("one node")
}

/// Nodes `n1`..`nN`: `n1` first, the others seeded from it.
pub struct Cluster {
    /// The nodes, `n1` first.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `size` nodes with the same `extra` flags and waits until every
    /// node is healthy and sees every node alive and normal.
    pub fn start(size: usize, extra: &[&str]) -> Cluster {
        let first = Node::start("n1", extra);
        let seed = first.cluster.to_string();
        let mut nodes = vec![first];
        for i in 2..=size {
            let mut args = vec!["--seeds", seed.as_str()];
            args.extend_from_slice(extra);
            nodes.push(Node::start(&format!("n{i}"), &args));
        }
        let cluster = Cluster { nodes };
        cluster.wait_converged();
        cluster
    }

    /// Node `number` (1-based, as the ids: node 1 is `n1`, the seed).
    pub fn node(&self, number: usize) -> &Node {
        &self.nodes[number - 1]
    }

    /// Node `number`, mutably (to kill it).
    pub fn node_mut(&mut self, number: usize) -> &mut Node {
        &mut self.nodes[number - 1]
    }

    /// Waits until `/health` is 200 on every node and each node's
    /// `/cluster` lists all of them `alive` and `normal`.
    pub fn wait_converged(&self) {
        let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        for node in &self.nodes {
            eventually(
                &format!("{} to be healthy and see {ids:?}", node.id),
                CONVERGE_TIMEOUT,
                || {
                    let health = node.health();
                    if health != 200 {
                        return Err(format!("/health {health}"));
                    }
                    for id in &ids {
                        let seen = node.sees(id)?;
                        if seen != ("alive".into(), "normal".into()) {
                            return Err(format!("{id} is {seen:?}"));
                        }
                    }
                    Ok(())
                },
            );
        }
    }
}

/// A RESP client over any byte stream (a TCP socket, a TLS stream), for
/// tests that need to see replies as sent: each reply read as text,
/// `+OK`/`-ERR ...`/`:1` as is, a bulk as its content, nil as `(nil)`,
/// an array or map as `[a, b]`.
pub struct Resp<S: Read + Write> {
    stream: std::io::BufReader<S>,
}

impl<S: Read + Write> Resp<S> {
    /// A client on `stream`.
    pub fn new(stream: S) -> Resp<S> {
        Resp {
            stream: std::io::BufReader::new(stream),
        }
    }

    /// The stream, to write raw bytes (a pipeline).
    pub fn stream_mut(&mut self) -> &mut S {
        self.stream.get_mut()
    }

    /// Sends `args` as one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// As [`Resp::cmd`], with the I/O error if the stream fails.
    pub fn try_cmd(&mut self, args: &[&str]) -> std::io::Result<String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let w = self.stream.get_mut();
        w.write_all(out.as_bytes())?;
        w.flush()?;
        self.reply()
    }

    /// Reads one reply.
    pub fn reply(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        let n = || rest.parse::<i64>().unwrap_or(-1);
        Ok(match kind {
            "+" | "-" | ":" | "#" | "," => line.to_owned(),
            "_" => "(nil)".to_owned(),
            "$" | "=" if n() < 0 => "(nil)".to_owned(),
            "$" | "=" => {
                let mut buf = vec![0; n() as usize + 2];
                self.stream.read_exact(&mut buf)?;
                buf.truncate(n() as usize);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if kind == "=" {
                    text[4..].to_owned()
                } else {
                    text
                }
            }
            "*" | "~" | ">" | "%" if n() < 0 => "(nil)".to_owned(),
            "*" | "~" | ">" | "%" => {
                let items = if kind == "%" { 2 * n() } else { n() };
                let parts = (0..items)
                    .map(|_| self.reply())
                    .collect::<std::io::Result<Vec<_>>>()?;
                format!("[{}]", parts.join(", "))
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    line.to_owned(),
                ));
            }
        })
    }
}
