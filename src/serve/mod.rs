//! `normstyle serve`: the norms compared live in the browser — a page and the JSON/HTTP API it
//! uses, on a real HTTP server (axum on tokio; feature `serve`).
//!
//! - `GET /` the page (HTML, CSS and JavaScript embedded in the binary: no CDN, no build step),
//!   `GET /samples/{photos|styles}/{name}` the bundled images.
//! - `POST /api/stylize` (multipart) → `image/png`, seconds in `X-Normstyle-Seconds`;
//!   `POST /api/compare` → the JSON of `normstyle compare --json` with the grid as a data URL;
//!   `GET /api/presets`, `GET /api/models`, `GET /healthz`.
//! - Errors are JSON `{"error": "…"}`: 400 bad input, 413 body too large, 415 not multipart,
//!   503 + `Retry-After` when the queue is full, 504 past the timeout.
//!
//! One [`App`] holds the loaded models, an LRU of prepared contents and styles bounded in bytes
//! (so moving α or switching the norm reruns only the network's last part) and a [`Gate`] that
//! bounds the images computed at once and the queue behind them. Nothing is written to disk and
//! no request names a server-side file.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use normstyle::serve::{self, App, ServeConfig};
//! let app = Arc::new(App::new(ServeConfig::default())?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7860").await?;
//! serve::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod api;
mod cache;
mod gate;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle::Device;

pub use cache::ByteLru;
pub use gate::{Gate, Refused};

use crate::pipeline::{Content, Family, Style, Stylizer};
use crate::Result;

/// The server's limits and device.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where the models run.
    pub device: Device,
    /// Largest request body (413 above): 25 MB by default.
    pub max_body_bytes: usize,
    /// Images computed at once (each uses every core): 1 by default.
    pub workers: usize,
    /// Requests that may wait behind them (503 beyond): 8 by default.
    pub queue: usize,
    /// A request that takes longer (waiting included) is answered 504: 60 s by default.
    pub timeout: Duration,
    /// Bytes of prepared contents and styles kept: 512 MiB by default.
    pub cache_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            device: Device::Cpu,
            max_body_bytes: 25 * 1000 * 1000,
            workers: 1,
            queue: 8,
            timeout: Duration::from_secs(60),
            cache_bytes: 512 << 20,
        }
    }
}

/// A model the server offers: an id for the API, a title for the page, the loaded network.
#[derive(Clone, Debug)]
pub struct ServedModel {
    /// The id `model=` names (`magenta`, `adain`, `trained:<file stem>`).
    pub id: String,
    /// One line for the page.
    pub title: String,
    /// The loaded network with the CLI's defaults.
    pub stylizer: Stylizer,
}

impl ServedModel {
    /// Every trained network in `dir` (`.safetensors` written by `normstyle train`, or
    /// fast_neural_style `.pth` state_dicts), in name order, as `trained:<file stem>`; a file
    /// that does not load is an error naming it.
    pub fn trained_dir(dir: &std::path::Path, device: &Device) -> Result<Vec<ServedModel>> {
        let entries = std::fs::read_dir(dir).map_err(|err| crate::Error::Io {
            path: dir.to_path_buf(),
            err,
        })?;
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| e == "safetensors" || e == "pth")
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let st = Stylizer::trained(p, device)?;
                let stem = p
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                let title = match st.trained_model() {
                    Some(m) => {
                        let info = m.info();
                        let steps = info
                            .metadata
                            .get(crate::model::trained::meta::STEPS)
                            .map_or_else(String::new, |s| format!(", {s} steps"));
                        format!(
                            "{stem} (trained {}, {}{steps})",
                            info.arch,
                            crate::model::trained::norm_name(info.norm)
                        )
                    }
                    None => stem.clone(),
                };
                Ok(ServedModel {
                    id: format!("trained:{stem}"),
                    title,
                    stylizer: st,
                })
            })
            .collect()
    }
}

/// What a prepared image was made from: the model, the bytes' sha256 and the size it runs at.
type Key = (String, String, Option<u32>);

/// The server's state: models, caches, admission.
#[derive(Debug)]
pub struct App {
    config: ServeConfig,
    models: Vec<ServedModel>,
    gate: Gate,
    contents: Mutex<ByteLru<Key, Content>>,
    styles: Mutex<ByteLru<Key, Style>>,
}

impl App {
    /// The embedded Magenta networks, and AdaIN when its weights are in the local store
    /// (`normstyle weights add`; feature `hub`).
    pub fn new(config: ServeConfig) -> Result<Self> {
        #[cfg_attr(not(feature = "hub"), allow(unused_mut))]
        let mut models = vec![ServedModel {
            id: "magenta".into(),
            title: "Magenta arbitrary style (embedded; presets: the 26-style network)".into(),
            stylizer: Stylizer::magenta(&config.device)?,
        }];
        #[cfg(feature = "hub")]
        if let Some(p) = crate::weights::store::cached_adain(&crate::weights::store::Origin::Local)
        {
            models.push(ServedModel {
                id: "adain".into(),
                title: "AdaIN (Huang & Belongie 2017; weights from the store)".into(),
                stylizer: Stylizer::adain(&p.vgg, &p.decoder, &config.device)?,
            });
        }
        Ok(Self::with_models(config, models))
    }

    /// A server for the given models (the first is the default).
    pub fn with_models(config: ServeConfig, models: Vec<ServedModel>) -> Self {
        App {
            gate: Gate::new(config.workers, config.queue),
            contents: Mutex::new(ByteLru::new(config.cache_bytes / 2)),
            styles: Mutex::new(ByteLru::new(config.cache_bytes / 2)),
            config,
            models,
        }
    }

    /// The models offered.
    pub fn models(&self) -> &[ServedModel] {
        &self.models
    }

    /// The limits.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// The index of model `id` (the first model without one).
    fn model_index(&self, id: Option<&str>) -> std::result::Result<usize, String> {
        let Some(id) = id else {
            return if self.models.is_empty() {
                Err("no model is loaded".into())
            } else {
                Ok(0)
            };
        };
        self.models.iter().position(|m| m.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
            format!("unknown model `{id}` (available: {})", ids.join(", "))
        })
    }

    /// The content prepared by `st` from `bytes`, from the cache when it was prepared before
    /// at the same size.
    fn content(&self, model: &str, bytes: &[u8], st: &Stylizer) -> Result<Arc<Content>> {
        let key = (model.to_string(), sha256(bytes), st.content_size());
        if let Some(c) = lock(&self.contents).get(&key) {
            return Ok(c);
        }
        let img = crate::imaging::decode_rgb(bytes, "content")?;
        let c = Arc::new(st.content_from_rgb(img)?);
        let (w, h) = c.dimensions();
        // The image and its tensor, plus AdaIN's relu4_1 features (512 channels at ⅛).
        let mut bytes_used = 2 * 12 * w as usize * h as usize;
        if st.family() == Family::Adain {
            bytes_used += 512 * 4 * (w as usize).div_ceil(8) * (h as usize).div_ceil(8);
        }
        lock(&self.contents).insert(key, Arc::clone(&c), bytes_used);
        Ok(c)
    }

    /// The style prepared by `st` from `bytes` (its vector or features are computed on first
    /// use and stay with it), from the cache when it was prepared before.
    fn style(&self, model: &str, bytes: &[u8], st: &Stylizer) -> Result<Arc<Style>> {
        let key = (model.to_string(), sha256(bytes), None);
        if let Some(s) = lock(&self.styles).get(&key) {
            return Ok(s);
        }
        let img = crate::imaging::decode_rgb(bytes, "style")?;
        let s = Arc::new(st.style_from_rgb(img)?);
        let (w, h) = s.image().dimensions();
        lock(&self.styles).insert(
            key,
            Arc::clone(&s),
            12 * w as usize * h as usize + (1 << 20),
        );
        Ok(s)
    }
}

/// A cache lock that survives a panicked holder (the cache stays consistent: every update is
/// one insert).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The routes of `app`: the page, the samples, the API.
pub fn router(app: Arc<App>) -> axum::Router {
    api::router(app)
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}
