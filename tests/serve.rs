//! `normstyle serve` over real HTTP on 127.0.0.1: the API's pixels against the CLI's, the
//! compare document, hostile requests (each a 4xx JSON answer, the server serving on), and a load
//! test against the binary (answers 200 or 503, peak RSS ≤ 1 GiB).
//!
//! The client is a few lines of HTTP/1.1 over `TcpStream` (`Connection: close`): what goes over
//! the wire is plain to read, and no HTTP client crate is needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use normstyle::serve::{App, ServeConfig};

fn root(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// One answer: status, lower-cased headers, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A multipart part: a file (bytes) or a text field.
enum Part<'a> {
    File(&'a [u8]),
    Text(&'a str),
}

fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before it read the whole body and close: that is fine.
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut raw = Vec::new();
    let _ = r.read_to_end(&mut raw);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 4 + size..];
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

fn multipart(parts: &[(&str, Part)]) -> (String, Vec<u8>) {
    let boundary = "normstyle-test-boundary-7b2f";
    let mut body = Vec::new();
    for (name, part) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::File(bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
            Part::Text(t) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{t}")
                        .as_bytes(),
                );
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post(addr: SocketAddr, path: &str, parts: &[(&str, Part)]) -> Answer {
    let (kind, body) = multipart(parts);
    post_raw(addr, path, &kind, &body)
}

fn post_raw(addr: SocketAddr, path: &str, kind: &str, body: &[u8]) -> Answer {
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        body,
    )
}

/// A server on 127.0.0.1:0 in this process (its own runtime thread), for the test's lifetime.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(config: ServeConfig) -> Server {
        Self::start_app(App::new(config).unwrap())
    }

    fn start_app(app: App) -> Server {
        let app = Arc::new(app);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (atx, arx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                atx.send(l.local_addr().unwrap()).unwrap();
                normstyle::serve::serve(l, app, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            addr: arx.recv().unwrap(),
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A small PNG of a bundled photo (the CLI and the API read the same bytes).
fn photo_png(name: &str, side: u32) -> Vec<u8> {
    let img = image::open(root(name)).unwrap().thumbnail(side, side);
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn png_pixels(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes).unwrap().to_rgb8()
}

/// The CLI's output for `args` (after `stylize content.png`) in `dir`.
fn cli(dir: &Path, args: &[&str]) -> image::RgbImage {
    let out = dir.join("cli.png");
    let _ = std::fs::remove_file(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_normstyle"))
        .current_dir(dir)
        .args(["stylize", "content.png", "-o", "cli.png", "-q"])
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "normstyle stylize {args:?}");
    image::open(&out).unwrap().to_rgb8()
}

#[test]
fn the_api_paints_the_clis_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let content = photo_png("assets/photos/chicago.jpg", 96);
    let style = photo_png("assets/styles/brushstrokes.jpg", 128);
    std::fs::write(dir.path().join("content.png"), &content).unwrap();
    std::fs::write(dir.path().join("style.png"), &style).unwrap();
    let server = Server::start(ServeConfig::default());
    // (CLI arguments, the same settings as API fields)
    type Case<'a> = (&'a [&'a str], Vec<(&'a str, Part<'a>)>);
    let cases: [Case; 3] = [
        (
            &["--style", "style.png"],
            vec![
                ("content", Part::File(&content)),
                ("style", Part::File(&style)),
            ],
        ),
        (
            &["--style", "style.png", "--norm", "ln", "--alpha", "0.6"],
            vec![
                ("content", Part::File(&content)),
                ("style", Part::File(&style)),
                ("norm", Part::Text("ln")),
                ("alpha", Part::Text("0.6")),
            ],
        ),
        (
            &["--preset", "3"],
            vec![
                ("content", Part::File(&content)),
                ("preset", Part::Text("3")),
            ],
        ),
    ];
    for (args, parts) in cases {
        let a = post(server.addr, "/api/stylize", &parts);
        assert_eq!(
            a.status,
            200,
            "{args:?}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.header("content-type"), Some("image/png"));
        let secs: f64 = a.header("x-normstyle-seconds").unwrap().parse().unwrap();
        assert!(secs > 0.0 && secs < 60.0);
        let api = png_pixels(&a.body);
        let want = cli(dir.path(), args);
        assert_eq!(api.dimensions(), want.dimensions(), "{args:?}");
        assert!(
            api == want,
            "{args:?}: the API's pixels differ from the CLI's"
        );
    }
}

/// `serve --models DIR`: a trained network is listed with the controls it takes, paints the
/// CLI's pixels for `stylize --model` (its recorded norm, and a swap), and refuses style inputs.
#[test]
fn trained_models_paint_the_clis_pixels_and_refuse_style_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        root("tests/fixtures/fns/transformer_net_in.pth"),
        models.join("fns.pth"),
    )
    .unwrap();
    let content = photo_png("assets/photos/chicago.jpg", 96);
    let style = photo_png("assets/styles/brushstrokes.jpg", 64);
    std::fs::write(dir.path().join("content.png"), &content).unwrap();
    let config = ServeConfig::default();
    let mut all = App::new(config.clone()).unwrap().models().to_vec();
    all.extend(normstyle::serve::ServedModel::trained_dir(&models, &config.device).unwrap());
    let server = Server::start_app(App::with_models(config, all));
    let listed = get(server.addr, "/api/models").json();
    let m = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "trained:fns")
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(m["family"], "trained");
    assert_eq!(m["norm"], "in");
    for control in ["style", "alpha", "presets", "compare"] {
        assert_eq!(m[control], false, "{control}: {m}");
    }
    for (norm, args) in [
        (None, vec!["--model", "models/fns.pth"]),
        (
            Some("ln"),
            vec!["--model", "models/fns.pth", "--norm", "ln"],
        ),
    ] {
        let mut parts = vec![
            ("content", Part::File(&content)),
            ("model", Part::Text("trained:fns")),
        ];
        if let Some(n) = norm {
            parts.push(("norm", Part::Text(n)));
        }
        let a = post(server.addr, "/api/stylize", &parts);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(png_pixels(&a.body) == cli(dir.path(), &args), "{args:?}");
    }
    for (field, part) in [("style", Part::File(&style)), ("alpha", Part::Text("0.5"))] {
        let a = post(
            server.addr,
            "/api/stylize",
            &[
                ("content", Part::File(&content)),
                ("model", Part::Text("trained:fns")),
                (field, part),
            ],
        );
        assert_eq!(a.status, 400);
        let e = a.json()["error"].as_str().unwrap().to_string();
        assert!(
            e.starts_with(&format!("{field}:")) && e.contains("trained"),
            "{e}"
        );
    }
}

#[test]
fn compare_gives_one_row_per_variant_and_the_listings_answer() {
    let server = Server::start(ServeConfig::default());
    let content = photo_png("assets/photos/golden_gate.jpg", 64);
    let style = photo_png("assets/styles/en_campo_gris.jpg", 64);
    let a = post(
        server.addr,
        "/api/compare",
        &[
            ("content", Part::File(&content)),
            ("style", Part::File(&style)),
            ("norms", Part::Text("in,ln,gn:4")),
            ("tile", Part::Text("64")),
        ],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let doc = a.json();
    let tiles = doc["tiles"].as_array().unwrap();
    let variants: Vec<&str> = tiles.iter().map(|t| t["norm"].as_str().unwrap()).collect();
    assert_eq!(variants, ["in", "ln", "gn:4"]);
    assert!(tiles.iter().all(|t| t["ssim"].as_f64().is_some()));
    assert!(doc["grid"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));

    assert_eq!(get(server.addr, "/healthz").json()["status"], "ok");
    assert_eq!(
        get(server.addr, "/api/presets").json()["presets"]
            .as_array()
            .unwrap()
            .len(),
        26
    );
    let models = get(server.addr, "/api/models").json();
    assert_eq!(models["models"][0]["id"], "magenta");
    let page = get(server.addr, "/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<script src=\"/app.js\">"));
    assert_eq!(get(server.addr, "/app.js").status, 200);
    assert_eq!(get(server.addr, "/samples/photos/chicago.jpg").status, 200);
    // No path reaches the disk.
    assert_eq!(
        get(server.addr, "/samples/photos/..%2F..%2FCargo.toml").status,
        404
    );
    assert_eq!(
        get(server.addr, "/nothing").json()["error"],
        "no such page or API route"
    );
}

#[test]
fn hostile_requests_get_one_line_json_errors_and_the_server_serves_on() {
    let server = Server::start(ServeConfig::default());
    let content = photo_png("assets/photos/chicago.jpg", 48);
    let style = photo_png("assets/styles/brushstrokes.jpg", 48);
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 150]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let truncated = &jpeg[..jpeg.len() / 2];
    let bomb = std::fs::read(root("tests/fixtures/images/bomb.png")).unwrap();
    let big = vec![7u8; 40 * 1000 * 1000];
    let with = |extra: (&'static str, &'static str)| {
        post(
            server.addr,
            "/api/stylize",
            &[
                ("content", Part::File(&content)),
                ("style", Part::File(&style)),
                (extra.0, Part::Text(extra.1)),
            ],
        )
    };
    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "truncated JPEG",
            post(
                server.addr,
                "/api/stylize",
                &[
                    ("content", Part::File(truncated)),
                    ("style", Part::File(&style)),
                ],
            ),
            400,
            "content: corrupt JPEG",
        ),
        (
            "decompression bomb",
            post(
                server.addr,
                "/api/stylize",
                &[
                    ("content", Part::File(&bomb)),
                    ("style", Part::File(&style)),
                ],
            ),
            400,
            "exceeds the limit of",
        ),
        (
            "40 MB body",
            post(
                server.addr,
                "/api/stylize",
                &[("content", Part::File(&big)), ("style", Part::File(&style))],
            ),
            413,
            "larger than the server's limit",
        ),
        (
            "missing content",
            post(
                server.addr,
                "/api/stylize",
                &[("style", Part::File(&style))],
            ),
            400,
            "content: missing",
        ),
        (
            "JSON body",
            post_raw(
                server.addr,
                "/api/stylize",
                "application/json",
                b"{\"alpha\": 1}",
            ),
            415,
            "expected a multipart/form-data body",
        ),
        (
            "alpha NaN",
            with(("alpha", "NaN")),
            400,
            "alpha: `NaN` is not a number in [0, 1]",
        ),
        (
            "unknown norm",
            with(("norm", "xn")),
            400,
            "norm: unknown normalization `xn`",
        ),
        (
            "unknown preset",
            post(
                server.addr,
                "/api/stylize",
                &[
                    ("content", Part::File(&content)),
                    ("preset", Part::Text("26")),
                ],
            ),
            400,
            "preset: `26` is not a style number 0–25",
        ),
        (
            "unknown model",
            with(("model", "vgg")),
            400,
            "model: unknown model `vgg`",
        ),
        (
            "unknown field",
            with(("path", "/etc/passwd")),
            400,
            "unknown field `path`",
        ),
    ];
    for (what, a, status, msg) in cases {
        assert_eq!(
            a.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let e = a.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(e.contains(msg) && !e.contains('\n'), "{what}: {e:?}");
        // Still serving.
        assert_eq!(get(server.addr, "/healthz").status, 200, "after {what}");
    }
    let ok = post(
        server.addr,
        "/api/stylize",
        &[
            ("content", Part::File(&content)),
            ("style", Part::File(&style)),
        ],
    );
    assert_eq!(ok.status, 200);
}

/// The binary on port 0: the URL it prints, and the child.
fn spawn_binary(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_normstyle"))
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("no URL on stdout: {line:?}"));
    (child, addr)
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[test]
fn two_hundred_requests_from_sixteen_clients() {
    let (mut child, addr) = spawn_binary(&[]);
    let photos: Vec<Vec<u8>> = ["assets/photos/chicago.jpg", "assets/photos/golden_gate.jpg"]
        .iter()
        .map(|p| photo_png(p, 256))
        .collect();
    let styles: Vec<Vec<u8>> = [
        "assets/styles/brushstrokes.jpg",
        "assets/styles/en_campo_gris.jpg",
    ]
    .iter()
    .map(|p| photo_png(p, 256))
    .collect();
    let (photos, styles) = (Arc::new(photos), Arc::new(styles));
    let norms = ["in", "bn", "ln", "gn"];
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (photos, styles) = (Arc::clone(&photos), Arc::clone(&styles));
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                // 200 requests in all: 12 or 13 per client.
                for i in 0..(200 / 16 + usize::from(c < 200 % 16)) {
                    let alpha = format!("{:.2}", 0.5 + 0.05 * (i % 10) as f64);
                    let a = post(
                        addr,
                        "/api/stylize",
                        &[
                            ("content", Part::File(&photos[(c + i) % 2])),
                            ("style", Part::File(&styles[i % 2])),
                            ("norm", Part::Text(norms[i % 4])),
                            ("alpha", Part::Text(&alpha)),
                        ],
                    );
                    if a.status == 503 {
                        // A polite client waits as Retry-After says before its next request.
                        let wait: u64 = a.header("retry-after").unwrap().parse().unwrap();
                        std::thread::sleep(Duration::from_secs(wait));
                    }
                    statuses.push(a.status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    let rss = peak_rss_bytes(child.id());
    println!(
        "{} requests: {ok} × 200, {busy} × 503; server peak RSS {:.0} MiB",
        statuses.len(),
        rss.unwrap_or(0) as f64 / f64::from(1 << 20)
    );
    assert_eq!(statuses.len(), 200);
    assert_eq!(ok + busy, 200, "every answer is 200 or 503: {statuses:?}");
    assert!(ok >= 100, "only {ok} of 200 succeeded");
    assert_eq!(get(addr, "/healthz").status, 200, "the server survived");
    if let Some(rss) = rss {
        assert!(rss <= 1 << 30, "peak RSS {rss} bytes > 1 GiB");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Bound to all interfaces it warns; Ctrl-C (SIGINT) stops it cleanly, exit code 0.
#[test]
fn it_warns_off_loopback_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_normstyle"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no URL on stdout: {line:?}"));
    assert!(line.starts_with("http://0.0.0.0:"), "{line}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get(addr, "/healthz").status, 200);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(
        stderr.contains("warning: listening on 0.0.0.0: other machines can reach this server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopping: finishing the requests in flight"),
        "{stderr}"
    );
}

/// A request that takes longer than the timeout (waiting included) is answered 504.
#[test]
fn past_the_timeout_the_answer_is_504() {
    let server = Server::start(ServeConfig {
        timeout: Duration::from_millis(1),
        ..ServeConfig::default()
    });
    let content = photo_png("assets/photos/chicago.jpg", 256);
    let style = photo_png("assets/styles/brushstrokes.jpg", 256);
    let a = post(
        server.addr,
        "/api/stylize",
        &[
            ("content", Part::File(&content)),
            ("style", Part::File(&style)),
        ],
    );
    assert_eq!(a.status, 504, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["error"]
        .as_str()
        .unwrap()
        .contains("took longer than"));
    assert_eq!(get(server.addr, "/healthz").status, 200);
}
