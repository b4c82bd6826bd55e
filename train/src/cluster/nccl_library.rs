//! NCCL's C library, opened at run time (feature `cuda`): the five calls the collective makes.
//!
//! cudarc's own NCCL loader only tries names such as `libnccl.so`, while NCCL installs itself
//! as `libnccl.so.2` (Debian's `libnccl2`, and the `nvidia-nccl` wheel PyTorch ships) and fails
//! with a panic when none is found; so the library is opened here: `AVDM_NCCL_LIBRARY` (a path)
//! if set, else `libnccl.so.2` or `libnccl.so` through the dynamic loader's search
//! (`LD_LIBRARY_PATH`, the system's library folders). NCCL's C ABI (`nccl.h`, stable over
//! NCCL 2.x) is declared below.

use std::ffi::{CStr, c_char, c_int, c_void};

use super::collective::ClusterError;

/// `ncclUniqueId`: 128 opaque bytes rank 0 makes and hands to the others.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UniqueId {
    pub internal: [c_char; 128],
}

/// `ncclComm_t`.
pub type Comm = *mut c_void;

/// `ncclDataType_t` values.
pub const FLOAT32: c_int = 7;
/// `ncclRedOp_t` value of a sum.
pub const SUM: c_int = 0;

type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> c_int;
type CommInitRank = unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> c_int;
type AllReduce = unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> c_int;
type Broadcast = unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> c_int;
type CommDestroy = unsafe extern "C" fn(Comm) -> c_int;
type GetErrorString = unsafe extern "C" fn(c_int) -> *const c_char;

/// The opened library and its calls.
pub struct NcclLibrary {
    pub get_unique_id: GetUniqueId,
    pub comm_init_rank: CommInitRank,
    pub all_reduce: AllReduce,
    pub broadcast: Broadcast,
    pub comm_destroy: CommDestroy,
    get_error_string: GetErrorString,
    /// Kept open while the calls above are used.
    _library: libloading::Library,
}

impl NcclLibrary {
    /// Opens NCCL (`AVDM_NCCL_LIBRARY`, else `libnccl.so.2`, else `libnccl.so`).
    pub fn open() -> Result<Self, ClusterError> {
        let names: Vec<String> = match std::env::var("AVDM_NCCL_LIBRARY") {
            Ok(path) => vec![path],
            Err(_) => vec!["libnccl.so.2".into(), "libnccl.so".into()],
        };
        let mut failures = Vec::new();
        for name in &names {
            // SAFETY: loading NCCL runs its initialisers, which have no preconditions.
            match unsafe { libloading::Library::new(name) } {
                Ok(library) => return Self::bind(library, name),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(ClusterError::Nccl(format!(
            "cannot open NCCL ({}); install it (Debian: libnccl2; PyTorch's wheel ships it under site-packages/nvidia/nccl/lib) and put its folder on LD_LIBRARY_PATH, or set AVDM_NCCL_LIBRARY to the library's path",
            failures.join("; ")
        )))
    }

    fn bind(library: libloading::Library, name: &str) -> Result<Self, ClusterError> {
        fn symbol<T: Copy>(library: &libloading::Library, name: &str, symbol: &str) -> Result<T, ClusterError> {
            // SAFETY: each type above is the symbol's C signature in nccl.h.
            unsafe { library.get::<T>(symbol.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| ClusterError::Nccl(format!("{name} has no {symbol}: {e}")))
        }
        Ok(Self {
            get_unique_id: symbol(&library, name, "ncclGetUniqueId")?,
            comm_init_rank: symbol(&library, name, "ncclCommInitRank")?,
            all_reduce: symbol(&library, name, "ncclAllReduce")?,
            broadcast: symbol(&library, name, "ncclBroadcast")?,
            comm_destroy: symbol(&library, name, "ncclCommDestroy")?,
            get_error_string: symbol(&library, name, "ncclGetErrorString")?,
            _library: library,
        })
    }

    /// `Ok` for `ncclSuccess` (0), else an error naming `what` and NCCL's reason.
    pub fn check(&self, what: &str, result: c_int) -> Result<(), ClusterError> {
        if result == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static C string for any result code.
        let reason = unsafe { CStr::from_ptr((self.get_error_string)(result)) }.to_string_lossy().into_owned();
        Err(ClusterError::Nccl(format!("{what}: {reason} (error {result})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_clear_error() {
        // SAFETY: tests of this module do not run concurrently with other readers of the
        // variable.
        unsafe { std::env::set_var("AVDM_NCCL_LIBRARY", "/no/such/libnccl.so.2") };
        let message = NcclLibrary::open().err().expect("no NCCL at that path").to_string();
        unsafe { std::env::remove_var("AVDM_NCCL_LIBRARY") };
        assert!(message.contains("/no/such/libnccl.so.2") && message.contains("AVDM_NCCL_LIBRARY"), "{message}");
    }
}
