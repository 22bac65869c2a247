using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;

namespace Lutra.Core.Tests;

/// <summary>
/// The 16-row interleaved kernels over 256-element super-blocks with Q8_K activations — Q4_K and Q5_K (one layout,
/// Q5_K with its fifth bits), Q3_K and IQ4_XS — against llama.cpp's reference dot product. Their integer sums are exact
/// and their float arithmetic per super-block is the reference's, in the reference's order, so every output must
/// equal <see cref="QuantReference.Dot"/> bit for bit. Raw random bytes give every qh bit pattern, scale and code.
/// </summary>
public unsafe class SuperBlockInterleavedMatVecTests
{
    private static MatVecKernel Kernel(GgmlType type)
    {
        if (!Q4_KInterleavedMatVec.IsSupported)
            Assert.Skip("the interleaved Q4_K, Q5_K, Q3_K and IQ4_XS kernels need AVX-512 BW");
        if (type == GgmlType.Q3_K && !Q3_KInterleavedMatVec.IsSupported)
            Assert.Skip("the interleaved Q3_K kernel needs GFNI");
        MatVecKernel kernel = type switch
        {
            GgmlType.Q4_K => new Q4_KInterleavedMatVec(),
            GgmlType.Q5_K => new Q5_KInterleavedMatVec(),
            GgmlType.Q3_K => new Q3_KInterleavedMatVec(),
            _ => new IQ4_XSInterleavedMatVec(),
        };
        Assert.Contains(KernelTable.RepackingKernels(type, InstructionSet.Avx512), k => k.GetType() == kernel.GetType());
        return kernel;
    }

    /// <summary>
    /// Reference-quantized rows, or raw bytes with finite d and dmin (zero, subnormal, negative; IQ4_XS has scales_h where
    /// dmin would be, and Q3_K's d comes last, after two scale bytes that take the first random half).
    /// </summary>
    private static byte[] Weights(GgmlType type, Random rng, int n, int rows, bool raw) =>
        KQuantWeights(rng, type, n, rows, raw, scaleOffset: DOffset(type) - (type == GgmlType.Q3_K ? 2 : 0));

    /// <summary>Where a GGUF block keeps its f16 d.</summary>
    private static int DOffset(GgmlType type) => type == GgmlType.Q3_K ? 108 : 0;

    [Theory]
    [InlineData(GgmlType.Q4_K, 1)]
    [InlineData(GgmlType.Q4_K, 8)]
    [InlineData(GgmlType.Q5_K, 1)]
    [InlineData(GgmlType.Q5_K, 8)]
    [InlineData(GgmlType.IQ4_XS, 1)]
    [InlineData(GgmlType.IQ4_XS, 8)]
    [InlineData(GgmlType.Q3_K, 1)]
    [InlineData(GgmlType.Q3_K, 8)]
    public void MatVec_equals_the_reference_dot_exactly(GgmlType type, int blocks)
    {
        var kernel = Kernel(type);
        var rng = new Random(blocks);
        var n = blocks * 256;
        foreach (var raw in new[] { false, true })
        {
            foreach (var (rows, splits) in new (int, int[])[] { (16 * 2 + 5, [16]), (5, []), (16, []) })
            {
                var weights = Weights(type, rng, n, rows, raw);
                var rowBytes = weights.Length / rows;
                // A guard region after the matrix: the repacked layout has exactly the GGUF size.
                using var packed = new Native(weights.Length + 64, 0x5A);
                fixed (byte* pw = weights)
                    Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                Assert.True(packed.Span[weights.Length..].IndexOfAnyExcept((byte)0x5A) < 0, "TryPrepareWeights wrote past rows·rowBytes");
                using var state = new Native(kernel.ActivationBytes(n), 0);
                for (var t = 0; t < 2; t++)
                {
                    // Token 0 saturates: every activation quantizes to ±127.
                    var x = t == 0 ? RandomRow(rng, n, 1).Select(v => v < 0 ? -3f : 3f).ToArray() : RandomRow(rng, n, 4);
                    RepackedKernelChecks.MatVecEqualsReference(kernel, type, weights, packed, state, rows, n, x, splits, $"raw={raw} token {t}");
                }
            }
        }
    }

    /// <summary>
    /// IQ4_XS's largest products: every code 0 (grid value −127) or 15 (+113) against activations all −127 or all
    /// +127 make each vpmaddubsw pair ±32258 (or ±28702), so two pairs summed in int16 would wrap.
    /// </summary>
    [Fact]
    public void IQ4_XS_extreme_codes_and_activations_do_not_overflow()
    {
        var kernel = Kernel(GgmlType.IQ4_XS);
        var rng = new Random(4);
        const int n = 512, rows = 16 * 2 + 3;
        var weights = Weights(GgmlType.IQ4_XS, rng, n, rows, raw: true);
        var rowBytes = weights.Length / rows;
        for (var r = 0; r < rows; r++)
            for (var b = 0; b < n / 256; b++)
                weights.AsSpan(r * rowBytes + b * 136 + 8, 128).Fill(r % 3 == 0 ? (byte)0xFF : (byte)0x00);
        using var packed = new Native(weights.Length, 0);
        fixed (byte* pw = weights)
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
        using var state = new Native(kernel.ActivationBytes(n), 0);
        foreach (var value in new[] { 3f, -3f })
            RepackedKernelChecks.MatVecEqualsReference(kernel, GgmlType.IQ4_XS, weights, packed, state, rows, n, Enumerable.Repeat(value, n).ToArray(),
                [], $"all activations {value}");
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.Q3_K)]
    public void MatMat_equals_the_reference_dot_exactly(GgmlType type)
    {
        var kernel = Kernel(type);
        var rng = new Random(2);
        foreach (var tokens in new[] { 1, 4, 5, 9 })
        {
            foreach (var (blocks, rows) in new[] { (1, 16 * 2 + 5), (8, 16) })
            {
                var n = blocks * 256;
                var weights = Weights(type, rng, n, rows, raw: tokens % 2 == 0);
                var rowBytes = weights.Length / rows;
                using var packed = new Native(weights.Length, 0);
                fixed (byte* pw = weights)
                    Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                var stride = kernel.ActivationBytes(n);
                using var states = new Native((long)stride * tokens, 0);
                for (var t = 0; t < tokens; t++)
                {
                    var x = t == 0 ? RandomRow(rng, n, 1).Select(v => v < 0 ? -3f : 3f).ToArray() : RandomRow(rng, n, 4);
                    fixed (float* px = x)
                        kernel.PrepareActivations(px, n, states.Pointer + (long)t * stride);
                }
                // A y stride wider than the rows: the kernel must write only its own cells.
                var yStride = rows + 5;
                var y = new float[tokens * yStride];
                Array.Fill(y, float.NaN);
                fixed (float* py = y)
                    kernel.MatMat(packed.Pointer, rowBytes, rows, states.Pointer, stride, tokens, n, py, yStride);
                for (var t = 0; t < tokens; t++)
                {
                    var standard = new ReadOnlySpan<byte>(states.Pointer + (long)t * stride, kernel.StandardActivationBytes(n));
                    for (var r = 0; r < rows; r++)
                    {
                        var expected = QuantReference.Dot(type, weights.AsSpan(r * rowBytes, rowBytes), standard, n);
                        Assert.True(expected.Equals(y[t * yStride + r]), $"n={n} rows={rows} token {t}/{tokens} row {r}: reference {expected}, MatMat {y[t * yStride + r]}");
                    }
                    for (var r = rows; r < yStride; r++)
                        Assert.True(float.IsNaN(y[t * yStride + r]), $"MatMat wrote outside its rows (token {t}, column {r})");
                }
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.Q3_K)]
    public void Matrices_the_layout_cannot_hold_are_refused(GgmlType type)
    {
        var kernel = Kernel(type);
        var rng = new Random(3);
        const int n = 512, rows = 20;
        var rowBytesPerBlock = (int)QuantTypes.Get(type).BlockBytes;
        var weights = Weights(type, rng, n, rows, raw: false);
        var rowBytes = weights.Length / rows;
        using var packed = new Native(weights.Length, 0);
        fixed (byte* pw = weights)
        {
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes + 2, rows - 1, n, packed.Pointer));
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n + 32, packed.Pointer));
            // A non-finite d or dmin in a tail row is fine (that row keeps the GGUF layout); in a tile row it is not.
            var d = DOffset(type);
            MemoryMarshal.Write(weights.AsSpan(17 * rowBytes + rowBytesPerBlock + d), Half.PositiveInfinity);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            // Only Q4_K and Q5_K keep a float (dmin) after d: IQ4_XS has scales_h there, Q3_K the next block's hmask.
            var hasDmin = type is GgmlType.Q4_K or GgmlType.Q5_K;
            var afterD = 5 * rowBytes + (hasDmin || d == 0 ? rowBytesPerBlock : 0) + d + 2;
            var saved = MemoryMarshal.Read<Half>(weights.AsSpan(afterD));
            MemoryMarshal.Write(weights.AsSpan(afterD), Half.NaN);
            Assert.Equal(!hasDmin, kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(afterD), saved);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(3 * rowBytes + d), Half.NegativeInfinity);
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
        }
    }
}
