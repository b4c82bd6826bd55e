//! Checks for the NVIDIA driver and a GPU before the CUDA backend starts: without them Burn's
//! CUDA device panics on its device thread (`RecvError`), so `--device cuda` on a machine
//! without a GPU gets a clear error instead.

use anyhow::bail;

/// The driver library, as the CUDA backend loads it at run time.
const DRIVER: &str = "libcuda.so.1";

/// Ok when the NVIDIA driver loads, starts and has a GPU number `index`. (Built without the
/// `cuda` feature too, so that its test runs everywhere.)
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn probe_cuda(index: usize) -> anyhow::Result<()> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type DeviceCount = unsafe extern "C" fn(*mut i32) -> i32;
    let name = std::ffi::CString::new(DRIVER).expect("no NUL");
    // SAFETY: dlopen/dlsym with a NUL-terminated name; the symbols are the driver API's
    // `cuInit(unsigned int)` and `cuDeviceGetCount(int*)`, called with valid arguments; the
    // library stays loaded (as the backend will load it again).
    unsafe {
        let driver = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if driver.is_null() {
            bail!("--device cuda:{index}: no NVIDIA driver on this machine ({DRIVER} not found); use --device cpu");
        }
        let symbol = |s: &[u8]| libc::dlsym(driver, s.as_ptr().cast());
        let (init, count) = (symbol(b"cuInit\0"), symbol(b"cuDeviceGetCount\0"));
        if init.is_null() || count.is_null() {
            bail!("--device cuda:{index}: {DRIVER} is not an NVIDIA driver library (no cuInit)");
        }
        let init: Init = std::mem::transmute(init);
        let count: DeviceCount = std::mem::transmute(count);
        let status = init(0);
        if status != 0 {
            bail!("--device cuda:{index}: the NVIDIA driver did not start (cuInit error {status}; 100 means no GPU)");
        }
        let mut devices = 0;
        let status = count(&mut devices);
        if status != 0 || index >= devices.max(0) as usize {
            bail!("--device cuda:{index}: this machine has {devices} CUDA device(s)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Here (no GPU, no driver) the probe names the missing driver; on a GPU machine it accepts
    /// GPU 0 and refuses an index past the last one.
    #[test]
    fn the_probe_names_what_is_missing() {
        match probe_cuda(0) {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("cuda:0") && (e.contains("NVIDIA driver") || e.contains("CUDA device(s)")), "{e}");
            }
            Ok(()) => {
                let err = probe_cuda(4096).unwrap_err().to_string();
                assert!(err.contains("CUDA device(s)"), "{err}");
            }
        }
    }
}
