//! Dot products for the vector scan. The int8 kernel is compiled twice:
//! once for the baseline target and once with AVX2 enabled, chosen at run
//! time; the plain loops are written so the compiler vectorises them.

/// Dot product of two int8 vectors, exact in i32.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), which is
            // the only requirement of `dot_i8_avx2`; its body is safe code.
            #[allow(unsafe_code)]
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_plain(a, b)
}

#[inline(always)]
fn dot_i8_plain(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // i16 products summed in i32 lanes: the shape LLVM turns into vpmaddwd.
    let mut acc = [0i32; 16];
    let chunks = n / 16;
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for ((s, x), y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += i32::from(i16::from(*x) * i16::from(*y));
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for i in chunks * 16..n {
        sum += i32::from(a[i]) * i32::from(b[i]);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_plain(a, b)
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for (ca, cb) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        for ((s, x), y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

/// Symmetric int8 quantisation: the vector and its scale (`x ≈ q * scale`).
pub fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (vec![0; v.len()], 0.0);
    }
    let scale = max / 127.0;
    (
        v.iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_kernels_agree_and_approximate_f32() {
        let a: Vec<f32> = (0..384).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let b: Vec<f32> = (0..384).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
        let (qa, sa) = quantize(&a);
        let (qb, sb) = quantize(&b);
        assert_eq!(dot_i8(&qa, &qb), dot_i8_plain(&qa, &qb));
        let approx = dot_i8(&qa, &qb) as f32 * sa * sb;
        let exact = dot_f32(&a, &b);
        assert!(
            (approx - exact).abs() < 0.02 * exact.abs().max(1.0),
            "{approx} vs {exact}"
        );
        assert_eq!(dot_i8(&[1, 2, 3], &[4, 5, 6]), 32);
    }
}
