//! The routes: the page, the bundled samples, and the JSON/HTTP API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::{App, Refused};
use crate::color::PreserveColor;
use crate::imaging;
use crate::model::magenta::PRESET_COUNT;
use crate::norm::NormKind;
use crate::pipeline::{
    compare, normalize_weights, parse_preset, CompareOptions, Labeled, Style, Styling, Stylizer,
};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// The bundled samples: (folder, name, bytes). A fixed table, so no request reaches the disk.
const SAMPLES: [(&str, &str, &[u8]); 4] = [
    (
        "photos",
        "chicago.jpg",
        include_bytes!("../../assets/photos/chicago.jpg"),
    ),
    (
        "photos",
        "golden_gate.jpg",
        include_bytes!("../../assets/photos/golden_gate.jpg"),
    ),
    (
        "styles",
        "brushstrokes.jpg",
        include_bytes!("../../assets/styles/brushstrokes.jpg"),
    ),
    (
        "styles",
        "en_campo_gris.jpg",
        include_bytes!("../../assets/styles/en_campo_gris.jpg"),
    ),
];

pub(super) fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/samples", get(samples))
        .route("/samples/{folder}/{name}", get(sample))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/presets", get(presets))
        .route("/api/models", get(models))
        .route("/api/stylize", post(stylize))
        .route("/api/compare", post(compare_route))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page or API route") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// An error answer: the status and one line, as `{"error": "…"}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    msg: String,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            msg: msg.into(),
        }
    }

    fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"error": self.msg}))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// A library error as an answer: what the request got wrong is 400, the rest 500.
impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let status = match e {
            E::Candle(_) | E::Io { .. } | E::Tool { .. } | E::Hub { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn samples() -> Json<serde_json::Value> {
    let of = |folder: &str| -> Vec<&str> {
        SAMPLES
            .iter()
            .filter(|(f, _, _)| *f == folder)
            .map(|(_, n, _)| *n)
            .collect()
    };
    Json(json!({"photos": of("photos"), "styles": of("styles")}))
}

async fn sample(Path((folder, name)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (_, _, bytes) = SAMPLES
        .iter()
        .find(|(f, n, _)| *f == folder && *n == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such sample"))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], *bytes).into_response())
}

async fn presets() -> Json<serde_json::Value> {
    let list: Vec<_> = (0..PRESET_COUNT)
        .map(|i| json!({"id": i, "label": format!("preset {i}")}))
        .collect();
    Json(json!({"presets": list}))
}

async fn models(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let list: Vec<_> = app
        .models
        .iter()
        .map(|m| {
            {
                let family = m.stylizer.family();
                let trained = family == crate::pipeline::Family::Trained;
                // The controls a model takes: a trained network has its style built in.
                json!({"id": m.id, "title": m.title, "family": family.name(),
                       "presets": family == crate::pipeline::Family::Magenta,
                       "style": !trained, "alpha": !trained, "compare": !trained,
                       "norm": m.stylizer.trained_model().map_or_else(
                           || "in".to_string(),
                           |t| crate::model::trained::norm_name(t.info().norm))})
            }
        })
        .collect();
    Json(json!({"models": list}))
}

/// A multipart form: the content, the styles (repeatable) and the other fields as text.
#[derive(Debug, Default)]
struct Form {
    content: Option<Bytes>,
    styles: Vec<Bytes>,
    fields: HashMap<String, String>,
}

/// The text fields each route takes.
const STYLIZE_FIELDS: [&str; 7] = [
    "preset",
    "style_weights",
    "alpha",
    "norm",
    "content_size",
    "preserve_color",
    "model",
];
const COMPARE_FIELDS: [&str; 3] = ["norms", "alphas", "tile"];

async fn read_form(req: Request, extra: &[&str]) -> Result<Form, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a multipart/form-data body (fields content, style or preset, …)",
        ));
    }
    let bad_body = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server's limit".to_string()
        } else {
            format!("malformed multipart body: {}", e.body_text())
        };
        ApiError::new(status, msg)
    };
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut form = Form::default();
    while let Some(field) = mp.next_field().await.map_err(bad_body)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "content" => form.content = Some(field.bytes().await.map_err(bad_body)?),
            "style" => form.styles.push(field.bytes().await.map_err(bad_body)?),
            n if STYLIZE_FIELDS.contains(&n) || extra.contains(&n) => {
                let text = field.text().await.map_err(bad_body)?;
                form.fields.insert(name, text.trim().to_string());
            }
            other => return Err(ApiError::bad(format!("unknown field `{other}`"))),
        }
    }
    Ok(form)
}

/// The settings of one stylization, parsed and checked before any work.
#[derive(Debug)]
struct Settings {
    model: usize,
    /// `None`: the model's own (a trained network's recorded norm; IN otherwise).
    norm: Option<NormKind>,
    alpha: f64,
    content_size: Option<u32>,
    preserve: Option<PreserveColor>,
    /// The 26 preset weights, or the style weights (one per style, summing to 1).
    preset: Option<Vec<f64>>,
    style_weights: Vec<f64>,
}

fn field_err(field: &str, e: crate::Error) -> ApiError {
    match e {
        crate::Error::Parse { msg, .. } => ApiError::bad(format!("{field}: {msg}")),
        other => ApiError::bad(format!("{field}: {other}")),
    }
}

fn unit_interval(field: &str, v: &str) -> Result<f64, ApiError> {
    match v.parse::<f64>() {
        Ok(a) if (0.0..=1.0).contains(&a) => Ok(a),
        _ => Err(ApiError::bad(format!(
            "{field}: `{v}` is not a number in [0, 1]"
        ))),
    }
}

fn settings(app: &App, form: &Form) -> Result<Settings, ApiError> {
    let f = |k: &str| {
        form.fields
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let model = app
        .model_index(f("model"))
        .map_err(|e| ApiError::bad(format!("model: {e}")))?;
    let family = app.models[model].stylizer.family();
    let norm = match f("norm") {
        None => None,
        Some(v) => Some(v.parse().map_err(|e| field_err("norm", e))?),
    };
    if family == crate::pipeline::Family::Trained {
        // A trained network paints its own style: style inputs and α do not apply.
        let refused = [
            ("style", !form.styles.is_empty()),
            ("preset", f("preset").is_some()),
            ("style_weights", f("style_weights").is_some()),
            (
                "alpha",
                f("alpha").is_some_and(|a| a.parse::<f64>() != Ok(1.0)),
            ),
        ];
        if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(ApiError::bad(format!(
                "{field}: model `{}` is a trained network with its style built in",
                app.models[model].id
            )));
        }
    }
    let alpha = f("alpha").map_or(Ok(1.0), |v| unit_interval("alpha", v))?;
    let content_size = match f("content_size") {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(0) => None,
            Ok(n) if (32..=8192).contains(&n) => Some(n),
            _ => {
                return Err(ApiError::bad(format!(
                    "content_size: `{v}` is not 0 (full size) or a side of 32–8192 pixels"
                )))
            }
        },
    };
    let preserve = match f("preserve_color") {
        None | Some("none") => None,
        Some(v) => Some(v.parse().map_err(|e| field_err("preserve_color", e))?),
    };
    if form.content.is_none() {
        return Err(ApiError::bad("content: missing (a photo file)"));
    }
    let preset = match f("preset") {
        None => None,
        Some(_) if family != crate::pipeline::Family::Magenta => {
            return Err(ApiError::bad(
                "preset: the presets are Magenta's 26-style network",
            ))
        }
        Some(_) if !form.styles.is_empty() => {
            return Err(ApiError::bad(
                "preset: give either style images or a preset",
            ))
        }
        Some(v) => Some(parse_preset(v).map_err(|e| field_err("preset", e))?),
    };
    if preset.is_none() && form.styles.is_empty() && family != crate::pipeline::Family::Trained {
        return Err(ApiError::bad("style: missing (a style image, or a preset)"));
    }
    let style_weights = match f("style_weights") {
        None => vec![1.0; form.styles.len()],
        Some(v) => v
            .split(',')
            .map(|w| {
                w.trim()
                    .parse::<f64>()
                    .map_err(|_| ApiError::bad(format!("style_weights: `{w}` is not a number")))
            })
            .collect::<Result<_, _>>()?,
    };
    if preset.is_none() && style_weights.len() != form.styles.len() {
        return Err(ApiError::bad(format!(
            "style_weights: {} weights for {} style images",
            style_weights.len(),
            form.styles.len()
        )));
    }
    let style_weights = if preset.is_none() && !style_weights.is_empty() {
        normalize_weights("style weights", &style_weights)
            .map_err(|e| field_err("style_weights", e))?
    } else {
        Vec::new()
    };
    Ok(Settings {
        model,
        norm,
        alpha,
        content_size,
        preserve,
        preset,
        style_weights,
    })
}

impl Settings {
    /// The model's stylizer with these options (the CLI's defaults for the rest).
    fn stylizer(&self, app: &App) -> Stylizer {
        let st = app.models[self.model].stylizer.clone();
        let st = match self.norm {
            Some(k) => st.with_norm(k),
            None => st,
        };
        st.with_alpha(self.alpha)
            .with_preserve_color(self.preserve)
            .with_content_size(self.content_size)
    }
}

/// Runs `job` through the gate within the timeout.
async fn gated<T: Send + 'static>(
    app: &Arc<App>,
    job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let timeout = app.config.timeout;
    match tokio::time::timeout(timeout, app.gate.run(job)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the request took longer than {} s", timeout.as_secs_f64()),
        )),
        Ok(Err(Refused::Busy)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy: every worker and queue place is taken; retry shortly",
        )),
        Ok(Err(Refused::Failed)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the computation failed",
        )),
        Ok(Ok(r)) => r,
    }
}

async fn stylize(State(app): State<Arc<App>>, req: Request) -> Result<Response, ApiError> {
    let form = read_form(req, &[]).await?;
    let s = settings(&app, &form)?;
    let app2 = Arc::clone(&app);
    let (png, seconds) = gated(&app, move || {
        let t0 = Instant::now();
        let app = app2;
        let st = s.stylizer(&app);
        let id = app.models[s.model].id.clone();
        let content = app.content(&id, form.content.as_deref().unwrap_or_default(), &st)?;
        let styles: Vec<Arc<Style>> = form
            .styles
            .iter()
            .map(|b| app.style(&id, b, &st))
            .collect::<crate::Result<_>>()?;
        let styling = match &s.preset {
            Some(w) => Styling::Preset(w.clone()),
            None if st.family() == crate::pipeline::Family::Trained => Styling::Trained,
            None => Styling::Blend(
                styles
                    .iter()
                    .map(|s| s.as_ref())
                    .zip(s.style_weights.iter().copied())
                    .collect(),
            ),
        };
        let mut out = st.render(std::slice::from_ref(content.as_ref()), &styling)?;
        let img = out
            .pop()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no output"))?;
        let png = imaging::encode(&img, image::ImageFormat::Png, 95)?;
        Ok((png, t0.elapsed().as_secs_f64()))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (
                header::HeaderName::from_static("x-normstyle-seconds"),
                format!("{seconds:.4}"),
            ),
        ],
        png,
    )
        .into_response())
}

async fn compare_route(State(app): State<Arc<App>>, req: Request) -> Result<Response, ApiError> {
    let form = read_form(req, &COMPARE_FIELDS).await?;
    let s = settings(&app, &form)?;
    if s.preset.is_some() || form.styles.len() != 1 {
        return Err(ApiError::bad(
            "style: compare takes exactly one style image",
        ));
    }
    let f = |k: &str| {
        form.fields
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let norms: Vec<NormKind> = f("norms")
        .unwrap_or("in,bn,ln,gn")
        .split(',')
        .map(|v| v.trim().parse().map_err(|e| field_err("norms", e)))
        .collect::<Result<_, _>>()?;
    let (alphas, sweep) = match f("alphas") {
        None => (vec![s.alpha], false),
        Some(v) => (
            v.split(',')
                .map(|a| unit_interval("alphas", a.trim()))
                .collect::<Result<Vec<_>, _>>()?,
            true,
        ),
    };
    let tile = match f("tile") {
        None => 384,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (32..=2048).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(format!(
                    "tile: `{v}` is not a side of 32–2048 pixels"
                )))
            }
        },
    };
    let opts = CompareOptions {
        norms,
        alphas,
        sweep,
        tile,
        title: None,
    };
    let app2 = Arc::clone(&app);
    let doc = gated(&app, move || {
        let app = app2;
        let st = s.stylizer(&app);
        let content = Labeled {
            label: "content".into(),
            image: imaging::decode_rgb(form.content.as_deref().unwrap_or_default(), "content")?,
        };
        let style = Labeled {
            label: "style".into(),
            image: imaging::decode_rgb(&form.styles[0], "style")?,
        };
        let cmp = compare(&st, &[content], &[], &style, &opts, || {})?;
        let png = imaging::encode(&cmp.grid, image::ImageFormat::Png, 95)?;
        let mut doc = serde_json::to_value(&cmp)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        doc["grid"] = format!("data:image/png;base64,{}", crate::pipeline::base64(&png)).into();
        Ok(doc)
    })
    .await?;
    Ok(Json(doc).into_response())
}
