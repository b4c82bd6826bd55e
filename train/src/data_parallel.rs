//! Data parallelism over threads and devices.
//!
//! Burn's CPU backend runs most operations on one thread, so a training step uses about one
//! core; a machine may also have several GPUs. Splitting the batch into shards, each run on its
//! own thread through its own fork of the model on its device (the same parameter ids, a
//! separate autodiff graph), and summing their gradients on the first device uses them all. The
//! sum is the batch gradient when each shard's loss is weighted by its share of the batch
//! ([`Shard::weight`]); the optimizer then steps once, on the first device, and the next forks
//! carry the new weights to the others.

use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// One shard of a batch of `total` samples. `samples` are global indices (the random draws
/// are keyed by them); the batch tensors a shard indexes start at sample `origin` (a rank's
/// first row; 0 in one process).
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    pub samples: Range<usize>,
    pub total: usize,
    pub origin: usize,
}

impl Shard {
    /// The shard's share of the batch: weight a shard's mean loss by it.
    pub fn weight(&self) -> f32 {
        self.samples.len() as f32 / self.total as f32
    }

    /// Rows `samples` of a batch tensor `(B, ...)` whose first row is sample `origin`.
    pub fn rows<const D: usize>(&self, batch: Tensor<D>) -> Tensor<D> {
        batch.narrow(0, self.samples.start - self.origin, self.samples.len())
    }
}

/// Splits `batch` samples into at most `shards` contiguous, nearly equal, non-empty shards.
pub fn split(batch: usize, shards: usize) -> Vec<Shard> {
    split_rows(0..batch, batch, shards)
}

/// Splits samples `rows` of a batch of `total` (a rank's share) into at most `shards`
/// contiguous, nearly equal, non-empty shards indexing tensors that start at `rows.start`.
pub fn split_rows(rows: Range<usize>, total: usize, shards: usize) -> Vec<Shard> {
    let (first, len) = (rows.start, rows.len());
    let n = shards.clamp(1, len.max(1));
    (0..n)
        .map(|i| Shard { samples: first + len * i / n..first + len * (i + 1) / n, total, origin: first })
        .filter(|s| !s.samples.is_empty())
        .collect()
}

/// What [`sharded_gradients`] returns: the sum of the shards' loss values and of their
/// gradients, and what each shard returned beside its loss, in shard order.
pub struct ShardedGradients<X> {
    pub loss: f64,
    pub grads: GradientsParams,
    pub outputs: Vec<X>,
}

/// Runs `loss_of(model fork, shard, d)` for every shard on its own thread, shard `i` on
/// `devices[d]` with `d = i % devices.len()` (`devices` are autodiff devices, the first the
/// model's); `loss_of` returns the shard's weighted loss and anything else the caller wants
/// back. The gradients are summed on the first device. Shard order is fixed, so the result is
/// deterministic. With one shard it runs on the calling thread.
pub fn sharded_gradients<M, X, E, F>(
    model: &M,
    shards: &[Shard],
    devices: &[Device],
    loss_of: F,
) -> Result<ShardedGradients<X>, E>
where
    M: Module,
    X: Send,
    E: Send,
    F: Fn(M, &Shard, usize) -> Result<(Tensor<1>, X), E> + Sync,
{
    let run = |fork: M, shard: &Shard, d: usize| -> Result<(f64, GradientsParams, X), E> {
        let (loss, output) = loss_of(fork.clone(), shard, d)?;
        let value = loss.clone().into_scalar::<f32>() as f64;
        Ok((value, GradientsParams::from_grads(loss.backward(), &fork), output))
    };
    let work: Vec<(M, &Shard, usize)> = shards
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let d = i % devices.len();
            (model.clone().fork(&devices[d]), shard, d)
        })
        .collect();
    let results = parallel_map(work, |(fork, shard, d)| run(fork, shard, d));
    let mut total = ShardedGradients { loss: 0.0, grads: GradientsParams::new(), outputs: Vec::new() };
    for (i, result) in results.into_iter().enumerate() {
        let (value, grads, output) = result?;
        total.loss += value;
        total.outputs.push(output);
        if i == 0 {
            total.grads = grads;
        } else {
            model.visit(&mut AddGradients { into: &mut total.grads, from: grads, device: &devices[0] });
        }
    }
    Ok(total)
}

/// `work(item)` for every item, each on its own thread (one item runs on the calling thread),
/// the results in item order.
pub fn parallel_map<I: Send, R: Send>(items: Vec<I>, work: impl Fn(I) -> R + Sync) -> Vec<R> {
    if items.len() == 1 {
        return items.into_iter().map(work).collect();
    }
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items.into_iter().map(|item| scope.spawn(move || work(item))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// Adds `from`'s gradient of every parameter into `into`, on `device`.
struct AddGradients<'a> {
    into: &'a mut GradientsParams,
    from: GradientsParams,
    device: &'a Device,
}

impl ModuleVisitor for AddGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.from.remove::<D>(param.id) else { return };
        let g = g.to_device(self.device);
        let sum = match self.into.remove::<D>(param.id) {
            Some(acc) => acc + g,
            None => g,
        };
        self.into.register(param.id, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn shards_cover_the_batch_once() {
        assert_eq!(split(5, 2).iter().map(|s| s.samples.clone()).collect::<Vec<_>>(), vec![0..2, 2..5]);
        assert_eq!(split(1, 4).len(), 1);
        assert_eq!(split(8, 0).len(), 1);
        let weights: f32 = split(7, 3).iter().map(Shard::weight).sum();
        assert!((weights - 1.0).abs() < 1e-6);
        // A rank's share: global sample indices, rows counted from its first sample.
        let share = split_rows(5..10, 16, 2);
        assert_eq!(share.iter().map(|s| s.samples.clone()).collect::<Vec<_>>(), vec![5..7, 7..10]);
        assert!(share.iter().all(|s| s.origin == 5 && s.total == 16));
        let rows = share[1].rows(Tensor::<1>::from_floats([0.0, 1.0, 2.0, 3.0, 4.0], &Device::flex()));
        assert_eq!(rows.into_data().convert::<f32>().iter::<f32>().collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn sharded_gradients_equal_the_whole_batch_gradient() {
        let device = Device::flex().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::random([5, 3], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let loss_of = |model: Linear, shard: &Shard, d: usize| -> Result<(Tensor<1>, (usize, usize)), ()> {
            Ok((model.forward(shard.rows(x.clone())).square().mean() * shard.weight(), (shard.samples.len(), d)))
        };
        let whole = sharded_gradients(&linear, &split(5, 1), std::slice::from_ref(&device), loss_of).unwrap();
        // Two devices (the same CPU twice here): shards alternate between them.
        let devices = [device.clone(), device.clone()];
        let sharded = sharded_gradients(&linear, &split(5, 3), &devices, loss_of).unwrap();
        assert_eq!(sharded.outputs, vec![(1, 0), (2, 1), (2, 0)], "each shard's output, in shard order");
        let (value, grads, value_sharded, grads_sharded) = (whole.loss, whole.grads, sharded.loss, sharded.grads);
        assert!((value - value_sharded).abs() < 1e-5, "{value} vs {value_sharded}");
        let weight = |g: &GradientsParams| g.get::<2>(linear.weight.id).unwrap();
        let diff = (weight(&grads) - weight(&grads_sharded)).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "weight gradients differ by {diff}");
        let bias = |g: &GradientsParams| g.get::<1>(linear.bias.as_ref().unwrap().id).unwrap();
        let diff = (bias(&grads) - bias(&grads_sharded)).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "bias gradients differ by {diff}");
    }
}
