//! I3D's inception module: four branches side by side (a 1x1x1 unit; 1x1x1 then 3x3x3; 1x1x1
//! then 3x3x3; a 3x3x3 "SAME" max pool then 1x1x1), concatenated over channels.

use burn::prelude::*;

use super::pool3d::max_pool3d_same;
use super::unit3d::Unit3d;

/// Output channels of `[branch 0, branch 1 reduce, branch 1, branch 2 reduce, branch 2, branch 3]`.
pub type InceptionWidths = [usize; 6];

#[derive(Module, Debug)]
pub struct InceptionModule {
    pub branch_0: Unit3d,
    pub branch_1a: Unit3d,
    pub branch_1b: Unit3d,
    pub branch_2a: Unit3d,
    pub branch_2b: Unit3d,
    pub branch_3: Unit3d,
}

impl InceptionModule {
    pub fn new(inputs: usize, w: InceptionWidths, device: &Device) -> Self {
        let unit = |i, o, k| Unit3d::new([i, o], [k; 3], [1; 3], true, device);
        Self {
            branch_0: unit(inputs, w[0], 1),
            branch_1a: unit(inputs, w[1], 1),
            branch_1b: unit(w[1], w[2], 3),
            branch_2a: unit(inputs, w[3], 1),
            branch_2b: unit(w[3], w[4], 3),
            branch_3: unit(inputs, w[5], 1),
        }
    }

    /// Channels out: the four branches' outputs together.
    pub fn out_channels(w: &InceptionWidths) -> usize {
        w[0] + w[2] + w[4] + w[5]
    }

    /// `(B, C, T, H, W) -> (B, out_channels, T, H, W)`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let b0 = self.branch_0.forward(x.clone());
        let b1 = self.branch_1b.forward(self.branch_1a.forward(x.clone()));
        let b2 = self.branch_2b.forward(self.branch_2a.forward(x.clone()));
        let b3 = self.branch_3.forward(max_pool3d_same(x, [3; 3], [1; 3]));
        Tensor::cat(vec![b0, b1, b2, b3], 1)
    }
}
