//! Gradients and parameters through a [`Collective`]: a module's gradients flattened in
//! parameter order into f32 buckets of at most [`BUCKET`] values (so that host memory holds one
//! bucket at a time), summed over the ranks and put back in their dtype; and rank 0's
//! parameters sent to every rank.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use super::collective::{ClusterError, Collective};

/// Values per bucket: 25 MiB of f32, PyTorch DDP's default `bucket_cap_mb`.
pub const BUCKET: usize = (25 << 20) / 4;

/// Puts one parameter's summed values (its presence flag first) back into the gradients.
type Rebuild = Box<dyn FnOnce(&[f32], &mut GradientsParams)>;

/// Flattens gradients into buckets and sums each bucket over the ranks when full.
struct Reducer<'a> {
    from: GradientsParams,
    into: GradientsParams,
    collective: &'a dyn Collective,
    bucket_limit: usize,
    bucket: Vec<f32>,
    pending: Vec<(usize, Rebuild)>,
    error: Option<ClusterError>,
}

impl Reducer<'_> {
    fn flush(&mut self) {
        if self.bucket.is_empty() || self.error.is_some() {
            return;
        }
        if let Err(e) = self.collective.sum_f32(&mut self.bucket) {
            self.error = Some(e);
            return;
        }
        let ends: Vec<usize> =
            self.pending.iter().skip(1).map(|(start, _)| *start).chain([self.bucket.len()]).collect();
        for ((start, rebuild), end) in self.pending.drain(..).zip(ends) {
            rebuild(&self.bucket[start..end], &mut self.into);
        }
        self.bucket.clear();
    }
}

impl ModuleVisitor for Reducer<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let (id, value) = (param.id, param.val());
        let dims = value.dims();
        let count: usize = dims.iter().product();
        let start = self.bucket.len();
        // A parameter without a gradient on this rank adds zeros, flagged absent: it gets a
        // gradient only if some rank has one (in practice every rank runs the same passes).
        match self.from.remove::<D>(id) {
            Some(g) => {
                self.bucket.push(1.0);
                self.bucket.extend(g.into_data().convert::<f32>().iter::<f32>());
            }
            None => {
                self.bucket.push(0.0);
                self.bucket.resize(start + 1 + count, 0.0);
            }
        }
        let device = value.device().without_autodiff();
        let dtype = value.dtype();
        let rebuild: Rebuild = Box::new(move |values: &[f32], into: &mut GradientsParams| {
            if values[0] > 0.0 {
                let data = TensorData::new(values[1..].to_vec(), dims);
                into.register(id, Tensor::<D>::from_data(data, &device).cast(float(dtype)));
            }
        });
        self.pending.push((start, rebuild));
        if self.bucket.len() >= self.bucket_limit {
            self.flush();
        }
    }
}

fn float(dtype: DType) -> burn::tensor::FloatDType {
    match dtype {
        DType::BF16 => burn::tensor::FloatDType::BF16,
        DType::F16 => burn::tensor::FloatDType::F16,
        DType::F64 => burn::tensor::FloatDType::F64,
        _ => burn::tensor::FloatDType::F32,
    }
}

/// `grads` of `module`'s parameters summed over the ranks (on every rank), in buckets of at
/// most `bucket` values; unchanged for [`super::SingleRank`].
pub fn sum_gradients<M: Module>(
    module: &M,
    grads: GradientsParams,
    collective: &dyn Collective,
    bucket: usize,
) -> Result<GradientsParams, ClusterError> {
    if collective.single_process() {
        return Ok(grads);
    }
    let mut reducer = Reducer {
        from: grads,
        into: GradientsParams::new(),
        collective,
        bucket_limit: bucket.max(1),
        bucket: Vec::new(),
        pending: Vec::new(),
        error: None,
    };
    module.visit(&mut reducer);
    reducer.flush();
    match reducer.error {
        Some(e) => Err(e),
        None => Ok(reducer.into),
    }
}

/// Replaces every float parameter's value by rank 0's (ids and trainability kept).
struct Broadcaster<'a> {
    collective: &'a dyn Collective,
    error: Option<ClusterError>,
}

impl ModuleMapper for Broadcaster<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let collective = self.collective;
        let mut error = None;
        let param = param.map(|tensor| {
            let (dims, device, dtype, tracked) =
                (tensor.dims(), tensor.device(), tensor.dtype(), tensor.is_require_grad());
            let mut values: Vec<f32> = tensor.clone().into_data().convert::<f32>().iter::<f32>().collect();
            if let Err(e) = collective.broadcast_f32(&mut values) {
                error = Some(e);
                return tensor;
            }
            let fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &device).cast(float(dtype)).detach();
            if tracked { fresh.require_grad() } else { fresh }
        });
        self.error = error;
        param
    }
}

/// `module` with rank 0's parameter values on every rank; unchanged for [`super::SingleRank`].
pub fn broadcast_parameters<M: Module>(module: M, collective: &dyn Collective) -> Result<M, ClusterError> {
    if collective.single_process() {
        return Ok(module);
    }
    let mut broadcaster = Broadcaster { collective, error: None };
    let module = module.map(&mut broadcaster);
    match broadcaster.error {
        Some(e) => Err(e),
        None => Ok(module),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use burn::nn::{Linear, LinearConfig};

    use super::super::collective::SingleRank;
    use super::*;

    /// Two ranks in one: "the other rank" holds `other` and the sums add it; broadcasts give it.
    struct Mirror {
        other: Mutex<Vec<f32>>,
        calls: Mutex<usize>,
    }

    impl Collective for Mirror {
        fn rank(&self) -> usize {
            1
        }
        fn world(&self) -> usize {
            2
        }
        fn sum_f32(&self, values: &mut [f32]) -> Result<(), ClusterError> {
            *self.calls.lock().unwrap() += 1;
            let mut other = self.other.lock().unwrap();
            let theirs: Vec<f32> = other.drain(..values.len()).collect();
            values.iter_mut().zip(theirs).for_each(|(v, t)| *v += t);
            Ok(())
        }
        fn sum_f64(&self, _: &mut [f64]) -> Result<(), ClusterError> {
            unreachable!()
        }
        fn broadcast_f32(&self, values: &mut [f32]) -> Result<(), ClusterError> {
            let mut other = self.other.lock().unwrap();
            values.copy_from_slice(&other.drain(..values.len()).collect::<Vec<_>>());
            Ok(())
        }
        fn broadcast_bytes(&self, _: &mut Vec<u8>) -> Result<(), ClusterError> {
            unreachable!()
        }
        fn all_agree(&self, go_on: bool) -> Result<bool, ClusterError> {
            Ok(go_on)
        }
    }

    fn gradients(linear: &Linear, device: &Device) -> GradientsParams {
        let x = Tensor::<2>::random([4, 3], burn::tensor::Distribution::Normal(0.0, 1.0), device);
        GradientsParams::from_grads(linear.forward(x).square().sum().backward(), linear)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().iter::<f32>().collect()
    }

    #[test]
    fn gradients_round_trip_through_buckets_and_add_the_other_ranks() {
        let device = Device::flex().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let (weight, bias) = (linear.weight.id, linear.bias.as_ref().unwrap().id);
        let grads = gradients(&linear, &device);
        let (w, b) = (values(grads.get::<2>(weight).unwrap()), values(grads.get::<1>(bias).unwrap()));
        // One rank: the very same gradients.
        let same = sum_gradients(&linear, gradients(&linear, &device), &SingleRank, BUCKET).unwrap();
        assert_eq!(same.len(), 2);
        // The other rank's flattened gradients (presence flag, then values, parameter order):
        // its weight gradient is 1 everywhere, it has no bias gradient.
        let mut other = vec![1.0];
        other.extend(vec![1.0; 6]);
        other.push(0.0);
        other.extend(vec![0.0; 2]);
        for bucket in [BUCKET, 1] {
            let mirror = Mirror { other: Mutex::new(other.clone()), calls: Mutex::new(0) };
            let summed = sum_gradients(&linear, gradients_like(&grads, &linear), &mirror, bucket).unwrap();
            let plus_one: Vec<f32> = w.iter().map(|v| v + 1.0).collect();
            assert_eq!(values(summed.get::<2>(weight).unwrap()), plus_one);
            assert_eq!(values(summed.get::<1>(bias).unwrap()), b, "present on this rank, zeros from the other");
            assert_eq!(*mirror.calls.lock().unwrap(), if bucket == 1 { 2 } else { 1 }, "one sum per bucket");
        }
    }

    /// A copy of `grads` (GradientsParams is not Clone).
    fn gradients_like(grads: &GradientsParams, linear: &Linear) -> GradientsParams {
        let mut copy = GradientsParams::new();
        copy.register(linear.weight.id, grads.get::<2>(linear.weight.id).unwrap());
        let bias = linear.bias.as_ref().unwrap().id;
        copy.register(bias, grads.get::<1>(bias).unwrap());
        copy
    }

    #[test]
    fn parameters_take_rank_0s_values_and_stay_trainable() {
        let device = Device::flex().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let mirror = Mirror { other: Mutex::new((0..8).map(|v| v as f32).collect()), calls: Mutex::new(0) };
        let synced = broadcast_parameters(linear.clone(), &mirror).unwrap();
        assert_eq!(synced.weight.id, linear.weight.id);
        assert_eq!(values(synced.weight.val()), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(values(synced.bias.as_ref().unwrap().val()), vec![6.0, 7.0]);
        assert!(synced.weight.val().is_require_grad());
    }
}
