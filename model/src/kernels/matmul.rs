//! Single-threaded matrix products over strided views of slices, for the CPU kernels (the
//! `gemm` crate that Burn's CPU backend runs on; the kernels spread work over cores themselves).

use gemm::{Parallelism, gemm};

/// A matrix in a slice: element `(i, j)` at `i * row_stride + j * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Matrix<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> Matrix<'a> {
    /// Row-major `rows x cols`.
    pub(crate) fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    pub(crate) fn transposed(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Rows `[start, start + count)`.
    pub(crate) fn row_block(self, start: usize, count: usize) -> Self {
        assert!(start + count <= self.rows);
        Self { data: &self.data[(start * self.row_stride).min(self.data.len())..], rows: count, ..self }
    }

    /// Columns `[start, start + count)`.
    pub(crate) fn column_block(self, start: usize, count: usize) -> Self {
        assert!(start + count <= self.cols);
        Self { data: &self.data[(start * self.col_stride).min(self.data.len())..], cols: count, ..self }
    }

    /// Whether every element lies inside the slice.
    fn fits(&self, len: usize) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < len
    }
}

/// `out = a b` (or `out + a b` when `accumulate`) for `out (a.rows x b.cols)` at
/// `out[i * out_row + j]`.
pub(crate) fn matmul(out: &mut [f32], out_row: usize, accumulate: bool, a: Matrix, b: Matrix) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert_eq!(k, b.rows, "matmul: {m}x{k} times {}x{n}", b.rows);
    let dst = Matrix { data: out, rows: m, cols: n, row_stride: out_row, col_stride: 1 };
    assert!(a.fits(a.data.len()) && b.fits(b.data.len()) && dst.fits(dst.data.len()), "matmul: past a slice");
    // SAFETY: the assert above keeps every element that gemm reads or writes inside its slice.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_row as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
