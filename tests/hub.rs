//! Downloads from a local mock of the Hugging Face Hub (no network): a small HTTP server on
//! 127.0.0.1 that serves files with the hub's URL layout (`/OWNER/NAME/resolve/REV/FILE`), a
//! relative redirect, `ETag`/`X-Repo-Commit` headers and byte ranges, and counts requests.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Repository → file → bytes; a file named in `truncate` is cut short after the first byte.
struct MockHub {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl MockHub {
    fn start(repos: HashMap<String, HashMap<String, Vec<u8>>>, truncate: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                r.fetch_add(1, Ordering::SeqCst);
                let repos = repos.clone();
                std::thread::spawn(move || serve(conn, &repos, truncate));
            }
        });
        MockHub {
            port,
            requests,
            stop,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn serve(mut conn: TcpStream, repos: &HashMap<String, HashMap<String, Vec<u8>>>, truncate: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let reply = |conn: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(body);
    };
    // /OWNER/NAME/resolve/REV/FILE redirects (relative, as the hub does for LFS files) to
    // /cdn/OWNER/NAME/FILE, which serves the bytes.
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.len() == 5 && parts[2] == "resolve" {
        let repo = format!("{}/{}", parts[0], parts[1]);
        let found = repos.get(&repo).and_then(|r| r.get(parts[4]));
        if found.is_none() {
            reply(
                &mut conn,
                "404 Not Found",
                &[("Content-Length".into(), "0".into())],
                b"",
            );
            return;
        }
        let location = format!("/cdn/{repo}/{}", parts[4]);
        reply(
            &mut conn,
            "302 Found",
            &[
                ("Location".into(), location),
                ("X-Repo-Commit".into(), COMMIT.into()),
                ("Content-Length".into(), "0".into()),
            ],
            b"",
        );
        return;
    }
    if parts.len() == 4 && parts[0] == "cdn" {
        let repo = format!("{}/{}", parts[1], parts[2]);
        let Some(bytes) = repos.get(&repo).and_then(|r| r.get(parts[3])) else {
            reply(
                &mut conn,
                "404 Not Found",
                &[("Content-Length".into(), "0".into())],
                b"",
            );
            return;
        };
        let total = bytes.len();
        let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(r) => {
                let (a, b) = r.split_once('-').unwrap_or((r, ""));
                let a: usize = a.parse().unwrap_or(0);
                let b: usize = b.parse().unwrap_or(total - 1);
                (a, b.min(total - 1))
            }
            None => (0, total - 1),
        };
        let body = &bytes[start..=end];
        let etag = format!("\"{}\"", normstyle::weights::sha256_hex(bytes));
        let headers = vec![
            (
                "Content-Range".into(),
                format!("bytes {start}-{end}/{total}"),
            ),
            ("Content-Length".into(), body.len().to_string()),
            ("ETag".into(), etag),
            ("X-Repo-Commit".into(), COMMIT.into()),
        ];
        if parts[3] == truncate && body.len() > 1 {
            reply(
                &mut conn,
                "206 Partial Content",
                &headers,
                &body[..body.len() / 3],
            );
            return; // the connection closes early
        }
        reply(&mut conn, "206 Partial Content", &headers, body);
        return;
    }
    reply(
        &mut conn,
        "404 Not Found",
        &[("Content-Length".into(), "0".into())],
        b"",
    );
}

/// (vgg, decoder) safetensors bytes of random AdaIN weights, made once.
fn weights() -> &'static (Vec<u8>, Vec<u8>) {
    static W: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (vgg, dec) = common::random_weights(&mut common::Stream(11));
        let write = |m: &normstyle::weights::TensorMap, n: &str| {
            let p = dir.path().join(n);
            normstyle::weights::write_tensors(&p, m, Default::default()).unwrap();
            std::fs::read(p).unwrap()
        };
        (write(&vgg, "v"), write(&dec, "d"))
    })
}

fn repos() -> HashMap<String, HashMap<String, Vec<u8>>> {
    let (vgg, dec) = weights();
    let files = |v: &Vec<u8>, d: &Vec<u8>| {
        HashMap::from([
            ("vgg_normalised.pth".to_string(), v.clone()),
            ("decoder.pth".to_string(), d.clone()),
        ])
    };
    HashMap::from([
        ("test/adain".to_string(), files(vgg, dec)),
        ("test/wrong".to_string(), files(dec, dec)),
        ("test/trunc".to_string(), files(vgg, dec)),
    ])
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(20, 12, |x, y| {
            image::Rgb([(x * 12) as u8, (y * 20) as u8, 90])
        });
        img.save(dir.path().join("photo.png")).unwrap();
        img.save(dir.path().join("art.png")).unwrap();
        Env { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, endpoint: &str, offline: bool, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_normstyle"));
        for k in [
            "RUST_BACKTRACE",
            "HF_TOKEN",
            "HF_HUB_CACHE",
            "NORMSTYLE_ADAIN_REPO",
            "HF_HUB_OFFLINE",
        ] {
            c.env_remove(k);
        }
        c.env("HF_ENDPOINT", endpoint)
            .env("HF_HOME", self.path().join("hf"))
            .env("NORMSTYLE_CACHE", self.path().join("store"));
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        }
        c.current_dir(self.path()).args(args).output().unwrap()
    }

    fn stylize(&self, endpoint: &str, offline: bool, repo: &str, out: &str) -> Output {
        self.run(
            endpoint,
            offline,
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--model",
                "adain",
                "--hf-repo",
                repo,
                "--content-size",
                "0",
                "--style-size",
                "0",
                "-o",
                out,
                "--json",
            ],
        )
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn downloads_once_then_runs_from_the_cache_and_offline() {
    let env = Env::new();
    let hub = MockHub::start(repos(), "");
    let first = env.stylize(&hub.endpoint(), false, "test/adain", "a.png");
    assert!(first.status.success(), "{}", stderr(&first));
    // stdout carries only the JSON line (progress bars and logs go to stderr).
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        serde_json::from_str::<serde_json::Value>(stdout.trim()).is_ok(),
        "{stdout}"
    );
    let after_first = hub.requests();
    assert!(
        after_first >= 4,
        "expected metadata and data requests, got {after_first}"
    );
    let stored = PathBuf::from(env.path()).join("store/adain/hf/test--adain@main");
    assert!(stored.join("vgg_normalised.safetensors").is_file());
    assert!(stored.join("decoder.safetensors").is_file());

    // Second run: no request at all.
    let second = env.stylize(&hub.endpoint(), false, "test/adain", "b.png");
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(hub.requests(), after_first);
    assert_eq!(
        std::fs::read(env.path().join("a.png")).unwrap(),
        std::fs::read(env.path().join("b.png")).unwrap()
    );

    // Server gone, offline: still runs from the cache.
    let endpoint = hub.endpoint();
    drop(hub);
    let third = env.stylize(&endpoint, true, "test/adain", "c.png");
    assert!(third.status.success(), "{}", stderr(&third));

    // `weights` list / verify / path see the stored files.
    let list = env.run(&endpoint, true, &["weights", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("test--adain@main") && text.contains("decoder.safetensors"),
        "{text}"
    );
    let verify = env.run(&endpoint, true, &["weights", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let path = env.run(
        &endpoint,
        true,
        &["weights", "path", "adain", "--hf-repo", "test/adain"],
    );
    assert_eq!(
        PathBuf::from(String::from_utf8_lossy(&path.stdout).trim()),
        stored
    );
}

#[test]
fn failures_are_clear_and_leave_nothing_that_looks_complete() {
    let env = Env::new();
    let hub = MockHub::start(repos(), "decoder.pth");
    let cases: [(&str, bool, &str); 4] = [
        ("test/adain", true, "not in the cache"), // offline without a cache
        ("test/missing", false, "not found (404)"), // no such repository
        ("test/trunc", false, "decoder.pth"),     // a transfer cut short
        ("test/wrong", false, "failed the structure check"), // the decoder posing as the encoder
    ];
    for (repo, offline, want) in cases {
        let out = env.stylize(&hub.endpoint(), offline, repo, "x.png");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{repo}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{repo}: {err}");
        assert!(err.contains(want), "{repo}: `{want}` not in {err}");
        assert!(!env.path().join("x.png").exists());
        let slug = repo.replace('/', "--");
        let store = env
            .path()
            .join("store/adain/hf")
            .join(format!("{slug}@main"));
        assert!(
            !store.join("decoder.safetensors").exists(),
            "{repo}: a decoder was stored"
        );
    }
    // No repository and no local weights: the error explains the options.
    let out = env.run(
        &hub.endpoint(),
        false,
        &[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "--model",
            "adain",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("--vgg PATH --decoder PATH")
            && err.contains("--hf-repo")
            && err.contains("weights add"),
        "{err}"
    );
}

#[test]
fn weights_add_imports_local_files() {
    let env = Env::new();
    let (vgg, dec) = weights();
    std::fs::write(env.path().join("v.pth"), vgg).unwrap();
    std::fs::write(env.path().join("d.pth"), dec).unwrap();
    let out = env.run(
        "http://127.0.0.1:9",
        true,
        &["weights", "add", "v.pth", "d.pth"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(
        "http://127.0.0.1:9",
        true,
        &[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "--model",
            "adain",
            "--content-size",
            "0",
            "-o",
            "l.png",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = env.run("http://127.0.0.1:9", true, &["weights", "add", "photo.png"]);
    assert_eq!(bad.status.code(), Some(1));
}
