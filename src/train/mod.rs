//! Training a feed-forward single-style network with a chosen normalization
//! (`normstyle train`; docs/ARCHITECTURE.md §7).
//!
//! A [`Trainer`] holds the network ([`TransformNet`], `small` or `johnson`, every norm slot the
//! crate's [`Norm`](crate::Norm) of one kind or none), the loss network ([`LossNet`]), the
//! training photos ([`ContentSet`]) and an [`Adam`] optimizer. Everything random — the initial
//! weights, the batch order and the crops — comes from the seed through the crate's generator,
//! and the batch of step s is a function of (seed, s); a checkpoint holds the weights (with BN's
//! running statistics), Adam's moments and the step, so a resumed run repeats the losses of an
//! uninterrupted one bit for bit on the same machine and thread count.
//!
//! ```no_run
//! use normstyle::candle::Device;
//! use normstyle::train::{ContentSet, LossNet, StyleLoss, TrainConfig, Trainer};
//!
//! # fn main() -> normstyle::Result<()> {
//! let device = Device::Cpu;
//! let cfg = TrainConfig { size: 128, ..TrainConfig::default() };
//! let style = normstyle::imaging::load_rgb("style.jpg".as_ref())?;
//! let photos = ContentSet::open("assets/train".as_ref(), cfg.size)?;
//! let loss = LossNet::predictor(&device, StyleLoss::Stats)?;
//! let mut trainer = Trainer::new(cfg, &style, "sha256-of-style".into(), photos, loss, &device)?;
//! while trainer.step() < 100 {
//!     let l = trainer.train_step()?;
//!     println!("{} {:.4}", l.step, l.total);
//! }
//! trainer.save_model("model.safetensors".as_ref())?;
//! # Ok(())
//! # }
//! ```

mod adam;
pub mod data;
pub mod experiment;
pub mod loss;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

pub use adam::Adam;
pub use data::{equalize_luminance, ContentSet};
pub use loss::{LossNet, LossNetKind, StyleLoss, StyleTargets};

use crate::imaging::{self, Rgb};
use crate::model::trained::{meta, norm_name, Arch, TrainedModel, TransformNet};
use crate::norm::NormKind;
use crate::rng::Rng;
use crate::weights::{write_tensors, TensorMap};
use crate::{Error, Result};

const WHAT: &str = "training";
const INIT_STREAM: u64 = 0x696e_6974;

/// Checkpoint metadata keys beyond the model's ([`meta`]).
mod ckpt {
    pub const STEP: &str = "normstyle.checkpoint.step";
    pub const SEED: &str = "normstyle.seed";
    pub const BATCH: &str = "normstyle.batch_size";
    pub const LR: &str = "normstyle.lr";
    pub const WEIGHTS: &str = "normstyle.loss_weights";
    pub const STYLE_LOSS: &str = "normstyle.style_loss";
    /// The training photos: their count and the sha256 of their file names in order.
    pub const PHOTOS: &str = "normstyle.photos";
    /// The generator: counter-based, so its state is the seed and the step.
    pub const RNG: &str = "normstyle.rng";
    pub const ADAM_M: &str = "adam.m.";
    pub const ADAM_V: &str = "adam.v.";
}

/// What to train, with `normstyle train`'s defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The network's architecture.
    pub arch: Arch,
    /// The norm in every slot (`None`: no norm layers).
    pub norm: Option<NormKind>,
    /// Crop side in pixels (≥ 16).
    pub size: u32,
    /// Crops per step (≥ 1; BN pools over them).
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of the content loss.
    pub content_weight: f64,
    /// Weight of the style loss.
    pub style_weight: f64,
    /// Weight of the total-variation loss.
    pub tv_weight: f64,
    /// Seeds the initial weights, the batch order and the crops.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            arch: Arch::Small,
            norm: Some(NormKind::In),
            size: 256,
            batch_size: 4,
            lr: 1e-3,
            content_weight: 1.0,
            style_weight: 1.0,
            tv_weight: 0.0,
            seed: 0,
        }
    }
}

impl TrainConfig {
    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::config(WHAT, msg));
        if self.size < 16 {
            return bad(format!("size {}: need at least 16 pixels", self.size));
        }
        if self.batch_size == 0 {
            return bad("batch size 0: need at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "learning rate {}: need a finite number > 0",
                self.lr
            ));
        }
        for (name, w) in [
            ("content weight", self.content_weight),
            ("style weight", self.style_weight),
            ("tv weight", self.tv_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!("{name} {w}: need a finite number ≥ 0"));
            }
        }
        Ok(())
    }
}

/// The losses of one step (weighted sum in `total`; the parts unweighted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLosses {
    /// The step just taken (1-based).
    pub step: u64,
    /// Content loss.
    pub content: f64,
    /// Style loss.
    pub style: f64,
    /// Total variation.
    pub tv: f64,
    /// content_weight·content + style_weight·style + tv_weight·tv.
    pub total: f64,
}

/// A training run in progress (see the module documentation).
pub struct Trainer {
    cfg: TrainConfig,
    device: Device,
    varmap: VarMap,
    net: TransformNet,
    adam: Adam,
    loss: LossNet,
    targets: StyleTargets,
    data: ContentSet,
    style_sha256: String,
    step: u64,
}

impl Trainer {
    /// A fresh run: seeded initial weights (PyTorch's default init for convolutions:
    /// U(±1/√fan_in) for weights and biases, the last layer's bias shifted to mid-gray; norms
    /// γ = 1, β = 0), step 0. `style`: the style
    /// image (resized to a shorter side of `cfg.size` here); `style_sha256` is recorded in the
    /// model file. `data` must have been opened at `cfg.size`.
    pub fn new(
        cfg: TrainConfig,
        style: &Rgb,
        style_sha256: String,
        data: ContentSet,
        loss: LossNet,
        device: &Device,
    ) -> Result<Self> {
        cfg.check()?;
        if data.size() != cfg.size {
            return Err(Error::config(
                WHAT,
                format!(
                    "the photos were prepared at {} pixels, the run trains at {}",
                    data.size(),
                    cfg.size
                ),
            ));
        }
        let style_img = imaging::resize_short_side(style.clone(), cfg.size);
        let targets = loss.style_targets(&imaging::to_tensor(&style_img, device)?)?;
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = TransformNet::trainable(&vb, cfg.arch, cfg.norm)?;
        seeded_init(&mut varmap, cfg.arch, cfg.seed, device)?;
        let adam = Adam::new(trainable(&varmap)?, cfg.lr)?;
        Ok(Trainer {
            cfg,
            device: device.clone(),
            varmap,
            net,
            adam,
            loss,
            targets,
            data,
            style_sha256,
            step: 0,
        })
    }

    /// This fresh run continued from `checkpoint`: it must be built ([`Trainer::new`]) as the
    /// checkpoint's run was (architecture, norm, size, batch size, seed, learning rate, loss
    /// weights and network, style image, photo file names); the first difference is an error
    /// naming it. `Trainer::new(…)?.resume(ckpt)?` continues where the checkpoint stopped.
    pub fn resume(mut self, checkpoint: &Path) -> Result<Self> {
        let bytes = std::fs::read(checkpoint).map_err(|err| Error::Io {
            path: checkpoint.to_path_buf(),
            err,
        })?;
        let in_file = |e: Error| e.in_file(checkpoint);
        let metadata = crate::model::trained::safetensors_metadata(&bytes);
        let step: u64 = metadata
            .get(ckpt::STEP)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                in_file(Error::Parse {
                    what: "checkpoint".into(),
                    msg: "not a normstyle training checkpoint (no step recorded); pass the \
                          `.ckpt` file `train` writes beside the model"
                        .into(),
                })
            })?;
        let expected = self.metadata(step);
        for key in [
            meta::ARCH,
            meta::NORM,
            meta::SIZE,
            ckpt::BATCH,
            ckpt::SEED,
            ckpt::LR,
            ckpt::WEIGHTS,
            meta::LOSS_NET,
            ckpt::STYLE_LOSS,
            meta::STYLE_SHA256,
            ckpt::PHOTOS,
        ] {
            let found = metadata.get(key).map(String::as_str).unwrap_or("(none)");
            let want = expected.get(key).map(String::as_str).unwrap_or("(none)");
            if found != want {
                let setting = key.trim_start_matches("normstyle.");
                return Err(in_file(Error::Config {
                    layer: "checkpoint",
                    msg: format!(
                        "trained with {setting} `{found}`, but this run asks \
                         for `{want}`; resume with the same settings"
                    ),
                }));
            }
        }
        let map = TensorMap::from_bytes(&bytes, &checkpoint.display().to_string(), &self.device)
            .map_err(in_file)?;
        let vars = self.all_vars()?;
        for (name, var) in &vars {
            let v = map.get(name, var.dims()).map_err(in_file)?;
            var.set(&v)?;
        }
        self.adam
            .restore(step, |name| {
                let shape = vars
                    .get(name)
                    .map(|v| v.dims().to_vec())
                    .unwrap_or_default();
                Ok((
                    map.get(&format!("{}{name}", ckpt::ADAM_M), &shape)?,
                    map.get(&format!("{}{name}", ckpt::ADAM_V), &shape)?,
                ))
            })
            .map_err(in_file)?;
        self.step = step;
        Ok(self)
    }

    /// Steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The network being trained (its weights are the run's variables).
    pub fn net(&self) -> &TransformNet {
        &self.net
    }

    /// The training photos.
    pub fn data(&self) -> &ContentSet {
        &self.data
    }

    /// One optimizer step on the batch of step [`Trainer::step`]: forward through the network
    /// and the loss network, backward, Adam. A loss that is not finite, or an update that
    /// would make a weight non-finite, stops with [`Error::Diverged`]; the weights (and BN's
    /// running statistics) stay those of the last good step.
    pub fn train_step(&mut self) -> Result<StepLosses> {
        // BN's running statistics move in the forward: kept to be put back after a bad step.
        let running = self.running_stats()?;
        let (losses, total) = self.losses_graph(self.step)?;
        let step = self.step + 1;
        let parts = format!(
            "content {}, style {}, tv {}",
            losses.content, losses.style, losses.tv
        );
        let diverged = if !losses.total.is_finite() {
            Some(parts)
        } else if !{
            let grads = {
                let _t = crate::profile::scope("train: backward");
                total.backward()?
            };
            let _t = crate::profile::scope("train: adam");
            self.adam.step(&grads)?
        } {
            Some(format!("{parts}, but the update overflows"))
        } else {
            None
        };
        if let Some(msg) = diverged {
            for (var, old) in running {
                var.set(&old)?;
            }
            return Err(Error::Diverged { step, msg });
        }
        self.step = step;
        Ok(losses)
    }

    /// The losses of step `step`'s batch with the graph that gives their gradient.
    fn losses_graph(&self, step: u64) -> Result<(StepLosses, Tensor)> {
        let x = self
            .data
            .batch(self.cfg.seed, step, self.cfg.batch_size, &self.device)?;
        // The content's features carry no graph: the fast inference kernels compute them.
        let content = {
            let _t = crate::profile::scope("train: content features");
            self.loss.features(&x)?.content
        };
        let y = {
            let _t = crate::profile::scope("train: network forward");
            (self.net.forward_t(&(&x * 255.0)?, true)? / 255.0)?
        };
        let _t = crate::profile::scope("train: loss forward");
        let f = self.loss.features(&y)?;
        let lc = loss::mse(&f.content, &content)?;
        let ls = self.loss.style_loss_of(&f.style, &self.targets)?;
        let ltv = loss::total_variation(&y)?;
        let total = ((&lc * self.cfg.content_weight)?
            + (&ls * self.cfg.style_weight)?
            + (&ltv * self.cfg.tv_weight)?)?;
        let scalar = |t: &Tensor| -> Result<f64> { Ok(f64::from(t.to_scalar::<f32>()?)) };
        let losses = StepLosses {
            step: step + 1,
            content: scalar(&lc)?,
            style: scalar(&ls)?,
            tv: scalar(&ltv)?,
            total: scalar(&total)?,
        };
        Ok((losses, total))
    }

    /// BN's running statistics and copies of their values (restored after a bad step).
    fn running_stats(&self) -> Result<Vec<(Var, Tensor)>> {
        self.all_vars()?
            .into_iter()
            .filter(|(n, _)| is_running(n))
            .map(|(_, v)| {
                let copy = v.as_tensor().copy()?;
                Ok((v, copy))
            })
            .collect()
    }

    fn all_vars(&self) -> Result<BTreeMap<String, Var>> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::input(WHAT, "the variables' lock is poisoned"))?;
        Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// The model file's metadata after `steps` steps (checkpoints add their own keys).
    fn metadata(&self, steps: u64) -> BTreeMap<String, String> {
        let c = &self.cfg;
        BTreeMap::from([
            (meta::ARCH.into(), c.arch.name().into()),
            (meta::NORM.into(), norm_name(c.norm)),
            (meta::STYLE_SHA256.into(), self.style_sha256.clone()),
            (meta::LOSS_NET.into(), self.loss.kind().name().into()),
            (meta::STEPS.into(), steps.to_string()),
            (meta::SIZE.into(), c.size.to_string()),
            (
                ckpt::STYLE_LOSS.into(),
                self.loss.style_loss().name().into(),
            ),
            (ckpt::BATCH.into(), c.batch_size.to_string()),
            (ckpt::PHOTOS.into(), self.photos_fingerprint()),
            (ckpt::SEED.into(), c.seed.to_string()),
            (ckpt::LR.into(), format!("{:e}", c.lr)),
            (
                ckpt::WEIGHTS.into(),
                format!(
                    "content={:e},style={:e},tv={:e}",
                    c.content_weight, c.style_weight, c.tv_weight
                ),
            ),
        ])
    }

    /// The photo set as the batches depend on it: count and file names in order.
    fn photos_fingerprint(&self) -> String {
        let names: Vec<String> = self
            .data
            .names()
            .iter()
            .map(|p| {
                p.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            })
            .collect();
        format!(
            "{} photos, names sha256 {}",
            names.len(),
            crate::weights::sha256_hex(names.join("\n").as_bytes())
        )
    }

    /// Writes the trained network to `path` (safetensors, atomically): the weights under
    /// PyTorch's `fast_neural_style` names (BN's running statistics too) and the `normstyle.*`
    /// metadata.
    pub fn save_model(&self, path: &Path) -> Result<()> {
        write_tensors(path, &self.weights()?, self.metadata(self.step))
    }

    /// The network's variables (BN's running statistics included) by name.
    fn weights(&self) -> Result<TensorMap> {
        let mut map = TensorMap::default();
        for (name, var) in self.all_vars()? {
            map.insert(name, var.as_tensor().detach());
        }
        Ok(map)
    }

    /// Writes a checkpoint to `path` (safetensors, atomically): the model's tensors and
    /// metadata, Adam's moments (`adam.m.NAME`, `adam.v.NAME`), the step and the generator's
    /// state.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut map = self.weights()?;
        for (name, m, v) in self.adam.moments() {
            map.insert(format!("{}{name}", ckpt::ADAM_M), m.detach());
            map.insert(format!("{}{name}", ckpt::ADAM_V), v.detach());
        }
        let mut metadata = self.metadata(self.step);
        metadata.insert(ckpt::STEP.into(), self.step.to_string());
        metadata.insert(
            ckpt::RNG.into(),
            format!(
                "splitmix64 streams of seed {} at step {}",
                self.cfg.seed, self.step
            ),
        );
        write_tensors(path, &map, metadata)
    }

    /// The network as trained so far, detached from the run, ready for inference.
    pub fn model(&self) -> Result<TrainedModel> {
        let mut tensors = HashMap::new();
        for (name, var) in self.all_vars()? {
            tensors.insert(name, var.as_tensor().copy()?.detach());
        }
        let map = TensorMap::new(tensors);
        let metadata = self
            .metadata(self.step)
            .into_iter()
            .collect::<HashMap<_, _>>();
        TrainedModel::from_map(&map, self.cfg.arch, self.cfg.norm, metadata, &self.device)
    }
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("cfg", &self.cfg)
            .field("step", &self.step)
            .field("photos", &self.data.len())
            .field("loss_net", &self.loss.kind())
            .finish()
    }
}

/// The checkpoint path of a model path: `model.safetensors` → `model.safetensors.ckpt`.
pub fn checkpoint_path(model: &Path) -> std::path::PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".ckpt");
    s.into()
}

fn is_running(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// The variables Adam updates (BN's running statistics are not trained).
fn trainable(varmap: &VarMap) -> Result<BTreeMap<String, Var>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::input(WHAT, "the variables' lock is poisoned"))?;
    Ok(data
        .iter()
        .filter(|(k, _)| !is_running(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// The network's last convolution (its output is the image).
const LAST_LAYER: &str = "deconv3";

/// Overwrites every convolution's weight and bias with seeded draws, in layer order:
/// U(−1/√fan_in, 1/√fan_in), PyTorch's `Conv2d` default (kaiming_uniform with a = √5); the last
/// layer's bias is shifted to mid-gray.
fn seeded_init(varmap: &mut VarMap, arch: Arch, seed: u64, device: &Device) -> Result<()> {
    let mut rng = Rng::new(seed, INIT_STREAM);
    for def in arch.layers() {
        let bound = 1.0 / ((def.cin * def.k * def.k) as f64).sqrt();
        let p = format!("{}.conv2d", def.name);
        let w = rng.uniform_tensor(-bound, bound, (def.cout, def.cin, def.k, def.k), device)?;
        let mut b = rng.uniform_tensor(-bound, bound, def.cout, device)?;
        if def.name == LAST_LAYER {
            // The output is in [0, 255]: starting at mid-gray rather than black saves the first
            // few hundred steps (the small network's last layer moves ~0.6 levels per step).
            b = (b + 127.5)?;
        }
        varmap.set_one(format!("{p}.weight"), w)?;
        varmap.set_one(format!("{p}.bias"), b)?;
    }
    Ok(())
}
