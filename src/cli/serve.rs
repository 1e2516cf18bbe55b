//! `normstyle serve`: the web app on a local HTTP server (see `normstyle::serve`).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use normstyle::serve::{self, App, ServeConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle serve                      # http://127.0.0.1:7860/
  normstyle serve --port 0 --open      # any free port, opened in the browser
  curl -F content=@photo.jpg -F style=@art.jpg -F norm=ln http://127.0.0.1:7860/api/stylize -o out.png")]
pub struct Args {
    /// Address to listen on (loopback by default: the page is for this machine).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 7860)]
    port: u16,
    /// Open the page in the default browser.
    #[arg(long)]
    open: bool,
    /// Device: cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Images computed at once (each uses every core).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,
    /// Requests that may wait behind them; past that the answer is 503.
    #[arg(long, default_value_t = 8)]
    queue: u32,
    /// Seconds a request may take, waiting included (504 past that).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Largest request body in MB (413 past that).
    #[arg(long, default_value_t = 25.0)]
    max_body_mb: f64,
    /// Memory for prepared photos and styles, in MiB.
    #[arg(long, default_value_t = 512)]
    cache_mib: u32,
    /// Also offer every trained network in this folder (.safetensors from `normstyle train`,
    /// fast_neural_style .pth), as `trained:<file name>`.
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    models: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout: {} is not a number of seconds > 0", args.timeout);
    }
    if !(args.max_body_mb.is_finite() && args.max_body_mb > 0.0) {
        anyhow::bail!("--max-body-mb: {} is not a size > 0", args.max_body_mb);
    }
    let config = ServeConfig {
        device: normstyle::device::device(&args.device)?,
        max_body_bytes: (args.max_body_mb * 1e6) as usize,
        workers: args.workers as usize,
        queue: args.queue as usize,
        timeout: Duration::from_secs_f64(args.timeout),
        cache_bytes: (args.cache_mib as usize) << 20,
    };
    let app = match &args.models {
        None => App::new(config)?,
        Some(dir) => {
            let trained = normstyle::serve::ServedModel::trained_dir(dir, &config.device)
                .with_context(|| format!("--models {}", dir.display()))?;
            if trained.is_empty() {
                anyhow::bail!(
                    "--models {}: no trained models (.safetensors, .pth) in it",
                    dir.display()
                );
            }
            let base = App::new(config.clone())?;
            let mut models = base.models().to_vec();
            models.extend(trained);
            App::with_models(config, models)
        }
    };
    let app = Arc::new(app);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--host {} --port {}: cannot listen", args.host, args.port))?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}/");
        if !args.host.is_loopback() {
            eprintln!(
                "warning: listening on {}: other machines can reach this server (no login)",
                args.host
            );
        }
        let ids: Vec<&str> = app.models().iter().map(|m| m.id.as_str()).collect();
        eprintln!("models: {}; Ctrl-C stops the server", ids.join(", "));
        // The URL on stdout, alone on its line: scripts and tests read it.
        println!("{url}");
        if args.open {
            open_browser(&url);
        }
        serve::serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: finishing the requests in flight");
        })
        .await
        .context("serving")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Opens `url` with the desktop's handler; a failure is a warning (the URL is printed).
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(program).arg(url).spawn() {
        eprintln!("warning: --open: cannot start {program} ({e}); open {url} yourself");
    }
}
