using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The 16-row interleaved F16 and BF16 kernels against llama.cpp's reference dot (products of the 16-bit values summed
/// in double). Their f32 sum runs in four column phases, so they are held to f32 rounding of the sum, 1e-5·Σ|w·a|;
/// MatMat must equal MatVec bit for bit (the same phases per token). The scaled F16 tiles must give the unscaled
/// tiles' results bit for bit, and the AVX2 path the AVX-512 path's.
/// </summary>
public unsafe class HalfInterleavedMatVecTests
{
    private static MatVecKernel Kernel(GgmlType type, bool scaled = false, InstructionSet isa = InstructionSet.Avx512)
    {
        if (!F16InterleavedMatVec.IsSupportedAt(isa))
            Assert.Skip($"the interleaved F16 and BF16 kernels' {isa} path is not supported on this CPU");
        MatVecKernel kernel = type == GgmlType.BF16 ? new BF16InterleavedMatVec(isa) : scaled ? new ScaledF16InterleavedMatVec(isa) : new F16InterleavedMatVec(isa);
        Assert.Contains(KernelTable.RepackingKernels(type, isa), k => k.GetType() == kernel.GetType() && k.Isa == isa);
        return kernel;
    }

    public static TheoryData<GgmlType, bool, InstructionSet> Paths() => new()
    {
        { GgmlType.F16, false, InstructionSet.Avx512 },
        { GgmlType.F16, true, InstructionSet.Avx512 },
        { GgmlType.BF16, false, InstructionSet.Avx512 },
        { GgmlType.F16, false, InstructionSet.Avx2 },
        { GgmlType.F16, true, InstructionSet.Avx2 },
        { GgmlType.BF16, false, InstructionSet.Avx2 },
    };

    /// <summary>The value of one 16-bit weight or activation of <paramref name="type"/>.</summary>
    private static float Value(GgmlType type, ushort bits) =>
        type == GgmlType.F16 ? (float)BitConverter.UInt16BitsToHalf(bits) : BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>
    /// Random weights with zeros, negative zeros, large negative values (below <paramref name="limit"/>) and subnormals
    /// (for BF16: rounded from f32 by truncation).
    /// </summary>
    private static byte[] Weights(GgmlType type, Random rng, int n, int rows, double limit = 60000)
    {
        var bits = new ushort[n * rows];
        for (var i = 0; i < bits.Length; i++)
        {
            bits[i] = (i % 13) switch
            {
                0 or 5 => (ushort)(rng.Next(1, type == GgmlType.F16 ? 0x400 : 0x80) | (rng.Next(2) << 15)), // subnormal
                1 => 0,
                3 => 0x8000,
                2 => Bits(type, -(rng.NextDouble() * limit)),
                _ => Bits(type, rng.NextDouble() * 2 - 1),
            };
        }
        return MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
    }

    private static ushort Bits(GgmlType type, double value) =>
        type == GgmlType.F16 ? BitConverter.HalfToUInt16Bits((Half)value) : (ushort)(BitConverter.SingleToUInt32Bits((float)value) >> 16);

    [Theory]
    [MemberData(nameof(Paths))]
    public void MatVec_and_MatMat_match_the_reference_dot(GgmlType type, bool scaled, InstructionSet isa)
    {
        var kernel = Kernel(type, scaled, isa);
        var rng = new Random(4);
        foreach (var (n, rows, tokens) in new[] { (64, 16, 1), (67, 17, 2), (5, 33, 3), (256, 47, 4), (130, 16, 7), (1000, 35, 9) })
        {
            var weights = Weights(type, rng, n, rows, scaled ? 63.96 : 60000);
            var rowBytes = 2 * n;
            var stride = kernel.ActivationBytes(n);
            var states = (byte*)NativeMemory.AlignedAlloc((nuint)(stride * tokens), 64);
            var packed = (byte*)NativeMemory.AlignedAlloc((nuint)weights.Length + 64, 64);
            try
            {
                new Span<byte>(packed + weights.Length, 64).Fill(0x5A);
                fixed (byte* pw = weights)
                    Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed));
                Assert.True(new Span<byte>(packed + weights.Length, 64).IndexOfAnyExcept((byte)0x5A) < 0, "TryPrepareWeights wrote past rows·rowBytes");
                for (var t = 0; t < tokens; t++)
                {
                    var x = new float[n];
                    for (var i = 0; i < n; i++)
                        x[i] = (float)((rng.NextDouble() * 2 - 1) * (t == 1 ? 65000 : 3));
                    fixed (float* px = x)
                        kernel.PrepareActivations(px, n, states + t * stride);
                    var expected = new byte[kernel.StandardActivationBytes(n)];
                    QuantReference.QuantizeActivations(type, x, expected);
                    Assert.True(expected.AsSpan().SequenceEqual(new ReadOnlySpan<byte>(states + t * stride, expected.Length)));
                }
                var yStride = rows + 3;
                var batch = new float[tokens * yStride];
                Array.Fill(batch, float.NaN);
                var single = new float[rows];
                fixed (float* pb = batch)
                fixed (float* ps = single)
                {
                    kernel.MatMat(packed, rowBytes, rows, states, stride, tokens, n, pb, yStride);
                    for (var t = 0; t < tokens; t++)
                    {
                        kernel.MatVec(packed, rowBytes, rows, states + t * stride, n, ps);
                        var activations = new ReadOnlySpan<byte>(states + t * stride, kernel.StandardActivationBytes(n));
                        var af = MemoryMarshal.Cast<byte, ushort>(activations);
                        for (var r = 0; r < rows; r++)
                        {
                            var row = weights.AsSpan(r * rowBytes, rowBytes);
                            var wf = MemoryMarshal.Cast<byte, ushort>(row);
                            var magnitude = 0.0;
                            for (var i = 0; i < n; i++)
                                magnitude += Math.Abs((double)Value(type, wf[i]) * Value(type, af[i]));
                            var reference = QuantReference.Dot(type, row, activations, n);
                            Assert.True(Math.Abs(reference - single[r]) <= 1e-5 * magnitude + 1e-30,
                                $"n={n} rows={rows} token {t} row {r}: reference {reference}, MatVec {single[r]}, sum |w*a| {magnitude}");
                            Assert.True(single[r].Equals(batch[t * yStride + r]), $"n={n} token {t}/{tokens} row {r}: MatVec {single[r]}, MatMat {batch[t * yStride + r]}");
                        }
                        for (var r = rows; r < yStride; r++)
                            Assert.True(float.IsNaN(batch[t * yStride + r]), $"MatMat wrote outside its rows (token {t}, column {r})");
                    }
                }
            }
            finally
            {
                NativeMemory.AlignedFree(states);
                NativeMemory.AlignedFree(packed);
            }
        }
    }

    [Fact]
    public void Inf_and_NaN_F16_weights_in_a_tile_are_refused()
    {
        var kernel = Kernel(GgmlType.F16);
        var weights = Weights(GgmlType.F16, new Random(5), 40, 20);
        var packed = (byte*)NativeMemory.AlignedAlloc((nuint)weights.Length, 64);
        try
        {
            fixed (byte* pw = weights)
            {
                Assert.False(kernel.TryPrepareWeights(pw, 78, 20, 40, packed));
                MemoryMarshal.Write(weights.AsSpan((17 * 40 + 3) * 2), Half.PositiveInfinity); // a tail row: kept as GGUF
                Assert.True(kernel.TryPrepareWeights(pw, 80, 20, 40, packed));
                MemoryMarshal.Write(weights.AsSpan((15 * 40 + 39) * 2), Half.NaN);
                Assert.False(kernel.TryPrepareWeights(pw, 80, 20, 40, packed));
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
        }
    }

    /// <summary>
    /// <paramref name="kernel"/>'s outputs for <paramref name="tokens"/> activation rows (token t scaled by
    /// <paramref name="scale"/>(t)): MatMat over all tokens but the last, MatVec for the last; row-major by token.
    /// </summary>
    private static float[] Outputs(MatVecKernel kernel, byte[] weights, int n, int rows, int tokens, Func<int, double> scale)
    {
        var stride = kernel.ActivationBytes(n);
        var states = (byte*)NativeMemory.AlignedAlloc((nuint)(stride * tokens), 64);
        var packed = (byte*)NativeMemory.AlignedAlloc((nuint)weights.Length, 64);
        try
        {
            fixed (byte* pw = weights)
                Assert.True(kernel.TryPrepareWeights(pw, 2 * n, rows, n, packed));
            var rng = new Random(9);
            for (var t = 0; t < tokens; t++)
            {
                var x = Enumerable.Range(0, n).Select(i => (float)((rng.NextDouble() * 2 - 1) * scale(t))).ToArray();
                fixed (float* px = x)
                    kernel.PrepareActivations(px, n, states + t * stride);
            }
            var y = new float[tokens * rows];
            fixed (float* py = y)
            {
                kernel.MatMat(packed, 2 * n, rows, states, stride, tokens - 1, n, py, rows);
                kernel.MatVec(packed, 2 * n, rows, states + (tokens - 1) * stride, n, py + (tokens - 1) * rows);
            }
            return y;
        }
        finally
        {
            NativeMemory.AlignedFree(states);
            NativeMemory.AlignedFree(packed);
        }
    }

    /// <summary>
    /// Asserts <paramref name="actual"/> is <paramref name="expected"/> bit for bit, on every row or (with
    /// <paramref name="tileRowsOnly"/>) on the rows of whole tiles: the rows after them go through each instruction
    /// set's own GGUF-layout row kernel.
    /// </summary>
    private static void AssertSameBits(float[] expected, float[] actual, int rows, bool tileRowsOnly, string what)
    {
        for (var i = 0; i < expected.Length; i++)
        {
            if (tileRowsOnly && i % rows >= rows / 16 * 16)
                continue;
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"token {i / rows} row {i % rows}: {what}: {expected[i]} against {actual[i]}");
        }
    }

    /// <summary>
    /// The scaled tiles give the unscaled tiles' bits on every row and token: the same products enter the same FMAs
    /// (weights from the largest accepted, 63.97, down to the smallest subnormal, against activations up to f16's
    /// largest); the AVX2 path gives the AVX-512 path's bits on the tile rows.
    /// </summary>
    [Theory]
    [InlineData(InstructionSet.Avx512)]
    [InlineData(InstructionSet.Avx2)]
    public void Scaled_F16_tiles_equal_the_unscaled_tiles_bit_for_bit(InstructionSet isa)
    {
        var scaled = Kernel(GgmlType.F16, scaled: true, isa);
        var plain = Kernel(GgmlType.F16, isa: isa);
        const int n = 1000, rows = 37, tokens = 6;
        var weights = Weights(GgmlType.F16, new Random(8), n, rows, limit: 63.96);
        MemoryMarshal.Write(weights.AsSpan(2 * 7), BitConverter.HalfToUInt16Bits((Half)63.97)); // the largest accepted
        MemoryMarshal.Write(weights.AsSpan(2 * 8), (ushort)0x0001); // the smallest subnormal
        MemoryMarshal.Write(weights.AsSpan(2 * 9), (ushort)0x83FF); // the largest negative subnormal
        static double Scale(int t) => t == 2 ? 65504 : t == 3 ? 1e-6 : 3;
        var actual = Outputs(scaled, weights, n, rows, tokens, Scale);
        AssertSameBits(Outputs(plain, weights, n, rows, tokens, Scale), actual, rows, tileRowsOnly: false, "unscaled against scaled");
        if (isa == InstructionSet.Avx2 && F16InterleavedMatVec.IsSupported)
            AssertSameBits(Outputs(new ScaledF16InterleavedMatVec(InstructionSet.Avx512), weights, n, rows, tokens, Scale), actual, rows,
                tileRowsOnly: true, "AVX-512 against AVX2");
    }

    /// <summary>The AVX2 path of the BF16 tiles gives the AVX-512 path's bits on the tile rows (odd token counts left over).</summary>
    [Fact]
    public void BF16_AVX2_tiles_equal_the_AVX512_tiles_bit_for_bit()
    {
        var narrow = Kernel(GgmlType.BF16, isa: InstructionSet.Avx2);
        var wide = Kernel(GgmlType.BF16);
        const int n = 520, rows = 33, tokens = 8;
        var weights = Weights(GgmlType.BF16, new Random(11), n, rows);
        AssertSameBits(Outputs(wide, weights, n, rows, tokens, t => t + 1), Outputs(narrow, weights, n, rows, tokens, t => t + 1), rows,
            tileRowsOnly: true, "AVX-512 against AVX2");
    }

    /// <summary>A tile weight of magnitude 64 or more (scaled past f16's range), Inf or NaN makes the scaled tiles refuse the matrix; tail rows may hold anything.</summary>
    [Fact]
    public void Scaled_F16_tiles_refuse_weights_from_64_up()
    {
        var kernel = Kernel(GgmlType.F16, scaled: true);
        const int n = 40, rows = 20;
        var packed = (byte*)NativeMemory.AlignedAlloc((nuint)(2 * n * rows), 64);
        try
        {
            foreach (var (value, accepted) in new[] { (63.97, true), (-63.97, true), (64.0, false), (-64.0, false), (65504.0, false),
                         (double.PositiveInfinity, false), (double.NaN, false) })
            {
                var weights = Weights(GgmlType.F16, new Random(10), n, rows, limit: 63.96);
                MemoryMarshal.Write(weights.AsSpan((15 * n + 39) * 2), (Half)value);
                MemoryMarshal.Write(weights.AsSpan((17 * n + 3) * 2), Half.PositiveInfinity); // a tail row: kept as GGUF
                fixed (byte* pw = weights)
                    Assert.True(accepted == kernel.TryPrepareWeights(pw, 2 * n, rows, n, packed), $"weight {value}");
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
        }
    }

    /// <summary>BF16 widens every value exactly, so a tile takes Inf and NaN weights and the sums carry them as the reference's do.</summary>
    [Fact]
    public void BF16_tiles_take_Inf_and_NaN_weights()
    {
        var kernel = Kernel(GgmlType.BF16);
        const int n = 40, rows = 16;
        var weights = Weights(GgmlType.BF16, new Random(6), n, rows);
        MemoryMarshal.Write(weights.AsSpan((3 * n + 4) * 2), (ushort)0x7F80); // +Inf, against a positive activation
        MemoryMarshal.Write(weights.AsSpan((9 * n + 7) * 2), (ushort)0x7FC1); // NaN
        var packed = (byte*)NativeMemory.AlignedAlloc((nuint)weights.Length, 64);
        var state = (byte*)NativeMemory.AlignedAlloc((nuint)kernel.ActivationBytes(n), 64);
        try
        {
            fixed (byte* pw = weights)
                Assert.True(kernel.TryPrepareWeights(pw, 2 * n, rows, n, packed));
            var x = Enumerable.Range(0, n).Select(i => i % 2 == 0 ? 0.5f : -0.25f).ToArray();
            fixed (float* px = x)
                kernel.PrepareActivations(px, n, state);
            var y = new float[rows];
            fixed (float* py = y)
                kernel.MatVec(packed, 2 * n, rows, state, n, py);
            var activations = new ReadOnlySpan<byte>(state, kernel.StandardActivationBytes(n));
            Assert.Equal(float.PositiveInfinity, QuantReference.Dot(GgmlType.BF16, weights.AsSpan(3 * n * 2, 2 * n), activations, n));
            Assert.Equal(float.PositiveInfinity, y[3]);
            Assert.True(float.IsNaN(y[9]) && float.IsNaN(QuantReference.Dot(GgmlType.BF16, weights.AsSpan(9 * n * 2, 2 * n), activations, n)));
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
            NativeMemory.AlignedFree(state);
        }
    }
}
