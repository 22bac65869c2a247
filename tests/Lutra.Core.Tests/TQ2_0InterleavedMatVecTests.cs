using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;

namespace Lutra.Core.Tests;

/// <summary>
/// The 16-row interleaved TQ2_0 kernel against llama.cpp's reference dot product. Its integer sums are exact and its
/// float arithmetic per super-block is the reference's, in the reference's order, so every output must equal
/// <see cref="QuantReference.Dot"/> bit for bit.
/// </summary>
public unsafe class TQ2_0InterleavedMatVecTests
{
    private const int BlockBytes = 66;

    /// <summary>Every variant this CPU runs: AVX-512, and AVX2 with its planes by shifts and (where present) by GFNI.</summary>
    internal static TQ2_0InterleavedMatVec[] Kernels()
    {
        var kernels = new List<TQ2_0InterleavedMatVec>();
        if (TQ2_0InterleavedMatVec.IsSupportedAt(InstructionSet.Avx512))
            kernels.Add(new TQ2_0InterleavedMatVec());
        if (TQ2_0InterleavedMatVec.IsSupportedAt(InstructionSet.Avx2))
        {
            kernels.Add(new TQ2_0InterleavedMatVec(InstructionSet.Avx2, gfni: false));
            if (Gfni.V256.IsSupported)
                kernels.Add(new TQ2_0InterleavedMatVec(InstructionSet.Avx2, gfni: true));
        }
        if (kernels.Count == 0)
            Assert.Skip("the interleaved TQ2_0 kernel needs AVX2 or AVX-512 BW");
        return [.. kernels];
    }

    public enum Codes { Quantized, Random, AllZero, AllTwo }

    /// <summary>
    /// Rows from the reference quantizer, or blocks of raw codes (random in {0,1,2}, all 0 or all 2) with random
    /// finite scales (zero, subnormal, negative, large).
    /// </summary>
    internal static byte[] Weights(Random rng, int n, int rows, Codes codes)
    {
        var rowBytes = n / 256 * BlockBytes;
        var bytes = new byte[rowBytes * rows];
        if (codes == Codes.Quantized)
        {
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(GgmlType.TQ2_0, RandomRow(rng, n, 0.5 + r % 3), bytes.AsSpan(r * rowBytes, rowBytes));
            return bytes;
        }
        for (var block = 0; block < bytes.Length / BlockBytes; block++)
        {
            var b = bytes.AsSpan(block * BlockBytes, BlockBytes);
            for (var i = 0; i < 64; i++)
            {
                b[i] = codes switch
                {
                    Codes.AllZero => 0,
                    Codes.AllTwo => 0b10_10_10_10,
                    _ => (byte)(rng.Next(3) | rng.Next(3) << 2 | rng.Next(3) << 4 | rng.Next(3) << 6),
                };
            }
            var scale = (block % 5) switch
            {
                0 => (Half)0,
                1 => BitConverter.UInt16BitsToHalf((ushort)rng.Next(1, 0x400)), // subnormal
                2 => (Half)(-(rng.NextDouble() * 100)),
                3 => (Half)60000,
                _ => (Half)((rng.NextDouble() - 0.5) * 0.02),
            };
            MemoryMarshal.Write(b[64..], scale);
        }
        return bytes;
    }

    /// <summary>Token activations: saturated (every value ±127), all +127, all −127, then random.</summary>
    internal static float[] Activations(Random rng, int n, int token) => token switch
    {
        0 => RandomRow(rng, n, 1).Select(v => v < 0 ? -3f : 3f).ToArray(),
        1 => Enumerable.Repeat(-2f, n).ToArray(),
        2 => Enumerable.Repeat(2f, n).ToArray(),
        _ => RandomRow(rng, n, 4),
    };

    /// <summary>Repacks into a buffer with a guard region after rows·RepackedRowBytes, and checks nothing was written there.</summary>
    internal static Native Pack(MatVecKernel kernel, byte[] weights, int rows, int n)
    {
        var rowBytes = weights.Length / rows;
        var size = rows * kernel.RepackedRowBytes(rowBytes, n);
        var packed = new Native(size + 64, 0x5A);
        fixed (byte* pw = weights)
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
        Assert.True(packed.Span[(int)size..].IndexOfAnyExcept((byte)0x5A) < 0, "TryPrepareWeights wrote past rows·RepackedRowBytes");
        return packed;
    }

    public static TheoryData<int, Codes> MatVecCases() => new()
    {
        { 1, Codes.Quantized }, { 1, Codes.Random }, { 3, Codes.AllTwo }, { 2, Codes.AllZero },
        { 8, Codes.Random }, { 56, Codes.Quantized }, { 56, Codes.AllTwo },
    };

    [Theory]
    [MemberData(nameof(MatVecCases))]
    public void MatVec_equals_the_reference_dot_exactly(int blocks, Codes codes)
    {
        foreach (var kernel in Kernels())
            MatVecEqualsReference(kernel, blocks, codes);
    }

    private static void MatVecEqualsReference(TQ2_0InterleavedMatVec kernel, int blocks, Codes codes)
    {
        var rng = new Random(blocks * 7 + (int)codes);
        var n = blocks * 256;
        foreach (var (rows, splits) in new (int, int[])[] { (16 * 2 + 5, [16]), (5, []), (16, []), (48, [16, 32]) })
        {
            var weights = Weights(rng, n, rows, codes);
            var rowBytes = weights.Length / rows;
            using var packed = Pack(kernel, weights, rows, n);
            using var state = new Native(kernel.ActivationBytes(n), 0);
            for (var t = 0; t < 4; t++)
            {
                var x = Activations(rng, n, t);
                RepackedKernelChecks.MatVecEqualsReference(kernel, GgmlType.TQ2_0, weights, packed, state, rows, n, x, splits, $"{kernel.Name}: {codes} token {t}");
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(7)]
    [InlineData(9)]
    public void MatMat_equals_the_reference_dot_exactly(int tokens)
    {
        foreach (var kernel in Kernels())
            MatMatEqualsReference(kernel, tokens);
    }

    private static void MatMatEqualsReference(TQ2_0InterleavedMatVec kernel, int tokens)
    {
        var rng = new Random(tokens);
        foreach (var (blocks, rows, codes) in new[] { (1, 16 * 3 + 5, Codes.Random), (8, 16, Codes.Quantized), (3, 21, Codes.AllTwo) })
        {
            var n = blocks * 256;
            var weights = Weights(rng, n, rows, codes);
            var rowBytes = weights.Length / rows;
            using var packed = Pack(kernel, weights, rows, n);
            var stride = kernel.ActivationBytes(n);
            using var states = new Native((long)stride * tokens, 0);
            for (var t = 0; t < tokens; t++)
            {
                fixed (float* px = Activations(rng, n, t))
                    kernel.PrepareActivations(px, n, states.Pointer + (long)t * stride);
            }
            // A y stride wider than the rows: the kernel must write only its own cells. Rows split at a tile boundary.
            var yStride = rows + 5;
            var y = new float[tokens * yStride];
            Array.Fill(y, float.NaN);
            var split = rows > 32 ? 32 : rows;
            fixed (float* py = y)
            {
                kernel.MatMat(packed.Pointer, rowBytes, split, states.Pointer, stride, tokens, n, py, yStride);
                kernel.MatMat(packed.Pointer + (long)split * rowBytes, rowBytes, rows - split, states.Pointer, stride, tokens, n, py + split, yStride);
            }
            for (var t = 0; t < tokens; t++)
            {
                var standard = new ReadOnlySpan<byte>(states.Pointer + (long)t * stride, kernel.StandardActivationBytes(n));
                for (var r = 0; r < rows; r++)
                {
                    var expected = QuantReference.Dot(GgmlType.TQ2_0, weights.AsSpan(r * rowBytes, rowBytes), standard, n);
                    Assert.True(expected.Equals(y[t * yStride + r]), $"{kernel.Name}: {codes} n={n} rows={rows} token {t}/{tokens} row {r}: reference {expected}, MatMat {y[t * yStride + r]}");
                }
                for (var r = rows; r < yStride; r++)
                    Assert.True(float.IsNaN(y[t * yStride + r]), $"MatMat wrote outside its rows (token {t}, column {r})");
            }
        }
    }

    [Fact]
    public void Matrices_the_layout_cannot_hold_are_refused()
    {
        foreach (var kernel in Kernels())
            Refuses(kernel);
    }

    private static void Refuses(TQ2_0InterleavedMatVec kernel)
    {
        var rng = new Random(3);
        const int n = 512, rows = 20;
        var weights = Weights(rng, n, rows, Codes.Quantized);
        var rowBytes = weights.Length / rows;
        using var packed = new Native(weights.Length, 0);
        using var state = new Native(kernel.ActivationBytes(n), 0);
        fixed (float* px = RandomRow(rng, n, 1))
            kernel.PrepareActivations(px, n, state.Pointer);
        var y = new float[rows];
        fixed (byte* pw = weights)
        fixed (float* py = y)
        {
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes + 2, rows - 1, n, packed.Pointer));
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n + 32, packed.Pointer));
            // A code 3 (value +2) in a tail row is fine: that row keeps the GGUF layout and the row dot handles it.
            weights[17 * rowBytes + BlockBytes + 40] |= 0b11_00_00_00;
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            kernel.MatVec(packed.Pointer, rowBytes, rows, state.Pointer, n, py);
            var standard = state.Span[..kernel.StandardActivationBytes(n)];
            Assert.Equal(QuantReference.Dot(GgmlType.TQ2_0, weights.AsSpan(17 * rowBytes, rowBytes), standard, n), y[17]);
            // In a tile row it is refused, in any of the four fields.
            for (var field = 0; field < 4; field++)
            {
                var at = 5 * rowBytes + BlockBytes + 9 + field;
                var original = weights[at];
                weights[at] = (byte)((original & ~(3 << 2 * field)) | 3 << 2 * field);
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                weights[at] = original;
            }
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            // A non-finite d in a tail row is fine; in a tile row it is not.
            MemoryMarshal.Write(weights.AsSpan(18 * rowBytes + 64), Half.PositiveInfinity);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(3 * rowBytes + BlockBytes + 64), Half.NaN);
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(3 * rowBytes + BlockBytes + 64), Half.NegativeInfinity);
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
        }
    }

    [Fact]
    public void The_table_offers_it_on_avx2_and_avx512_as_a_multiply_add_kernel_ahead_of_the_ternary_lut()
    {
        foreach (var isa in KernelIsa.Supported)
        {
            var kernels = KernelTable.RepackingKernels(GgmlType.TQ2_0, isa);
            var interleaved = kernels.SingleOrDefault(k => k is TQ2_0InterleavedMatVec);
            Assert.Equal(isa is InstructionSet.Avx2 or InstructionSet.Avx512 && TQ2_0InterleavedMatVec.IsSupportedAt(isa), interleaved is not null);
            if (interleaved is null)
                continue;
            Assert.Equal(isa, interleaved.Isa);
            Assert.True(interleaved.RepacksWeights);
            Assert.False(interleaved.UsesLookupTables);
            Assert.Equal(16, interleaved.RowTile);
            Assert.Equal(66 * 8, interleaved.RepackedRowBytes(66 * 8, 256 * 8));
            // Measured faster than the 5-trit tables in decode and prefill, so untuned loads take it first.
            Assert.Same(interleaved, kernels[0]);
            Assert.DoesNotContain(KernelTable.RepackingKernels(GgmlType.TQ1_0, isa), k => k is TQ2_0InterleavedMatVec);
        }
    }
}
