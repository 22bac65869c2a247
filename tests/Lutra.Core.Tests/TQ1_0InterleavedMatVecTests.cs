using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;
using Codes = Lutra.Core.Tests.TQ2_0InterleavedMatVecTests.Codes;

namespace Lutra.Core.Tests;

/// <summary>
/// TQ1_0 converted into the interleaved TQ2_0 tiles, against llama.cpp's TQ1_0 reference dot product: the same trits
/// and d give the same integer sums and the same float arithmetic, so every output must equal
/// <see cref="QuantReference.Dot"/> bit for bit, under every variant of the TQ2_0 kernel this CPU runs.
/// </summary>
public unsafe class TQ1_0InterleavedMatVecTests
{
    private const int BlockBytes = 54;

    private static TQ1_0InterleavedMatVec[] Kernels() => [.. TQ2_0InterleavedMatVecTests.Kernels().Select(k => new TQ1_0InterleavedMatVec(k))];

    /// <summary>
    /// Rows from the reference quantizer, or blocks of raw bytes (random: every byte decodes to five trits; 0: every
    /// trit 0; 255: every trit 2) with finite scales cycling through zero, subnormal, negative and large values.
    /// </summary>
    private static byte[] Weights(Random rng, int n, int rows, Codes codes)
    {
        var rowBytes = n / 256 * BlockBytes;
        var bytes = new byte[rowBytes * rows];
        if (codes == Codes.Quantized)
        {
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(GgmlType.TQ1_0, RandomRow(rng, n, 0.5 + r % 3), bytes.AsSpan(r * rowBytes, rowBytes));
            return bytes;
        }
        for (var block = 0; block < bytes.Length / BlockBytes; block++)
        {
            var b = bytes.AsSpan(block * BlockBytes, BlockBytes);
            if (codes == Codes.Random)
                rng.NextBytes(b);
            else
                b.Fill(codes == Codes.AllTwo ? (byte)255 : (byte)0);
            var scale = (block % 5) switch
            {
                0 => (Half)0,
                1 => BitConverter.UInt16BitsToHalf((ushort)rng.Next(1, 0x400)), // subnormal
                2 => (Half)(-(rng.NextDouble() * 100)),
                3 => (Half)60000,
                _ => (Half)((rng.NextDouble() - 0.5) * 0.02),
            };
            MemoryMarshal.Write(b[52..], scale);
        }
        return bytes;
    }

    /// <summary>Repacks into rows·(66/54)·rowBytes bytes, asserting nothing written past them.</summary>
    [Theory]
    [MemberData(nameof(TQ2_0InterleavedMatVecTests.MatVecCases), MemberType = typeof(TQ2_0InterleavedMatVecTests))]
    public void MatVec_equals_the_TQ1_0_reference_dot_exactly(int blocks, Codes codes)
    {
        foreach (var kernel in Kernels())
        {
            var rng = new Random(blocks * 11 + (int)codes);
            var n = blocks * 256;
            foreach (var (rows, splits) in new (int, int[])[] { (16 * 2 + 5, [16]), (5, []), (16, []), (48, [16, 32]) })
            {
                var weights = Weights(rng, n, rows, codes);
                using var packed = TQ2_0InterleavedMatVecTests.Pack(kernel, weights, rows, n);
                using var state = new Native(kernel.ActivationBytes(n), 0);
                for (var t = 0; t < 4; t++)
                {
                    var x = TQ2_0InterleavedMatVecTests.Activations(rng, n, t);
                    RepackedKernelChecks.MatVecEqualsReference(kernel, GgmlType.TQ1_0, weights, packed, state, rows, n, x, splits, $"{kernel.Name}: {codes} token {t}");
                }
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
    public void MatMat_equals_the_TQ1_0_reference_dot_exactly(int tokens)
    {
        foreach (var kernel in Kernels())
        {
            var rng = new Random(tokens + 100);
            foreach (var (blocks, rows, codes) in new[] { (1, 16 * 3 + 5, Codes.Random), (8, 16, Codes.Quantized), (3, 21, Codes.AllTwo) })
            {
                var n = blocks * 256;
                var weights = Weights(rng, n, rows, codes);
                var rowBytes = weights.Length / rows;
                var stride = kernel.RepackedRowBytes(rowBytes, n);
                using var packed = TQ2_0InterleavedMatVecTests.Pack(kernel, weights, rows, n);
                var stateStride = kernel.ActivationBytes(n);
                using var states = new Native((long)stateStride * tokens, 0);
                for (var t = 0; t < tokens; t++)
                {
                    fixed (float* px = TQ2_0InterleavedMatVecTests.Activations(rng, n, t))
                        kernel.PrepareActivations(px, n, states.Pointer + (long)t * stateStride);
                }
                var yStride = rows + 5;
                var y = new float[tokens * yStride];
                Array.Fill(y, float.NaN);
                var split = rows > 32 ? 32 : rows;
                fixed (float* py = y)
                {
                    kernel.MatMat(packed.Pointer, stride, split, states.Pointer, stateStride, tokens, n, py, yStride);
                    kernel.MatMat(packed.Pointer + split * stride, stride, rows - split, states.Pointer, stateStride, tokens, n, py + split, yStride);
                }
                for (var t = 0; t < tokens; t++)
                {
                    var standard = new ReadOnlySpan<byte>(states.Pointer + (long)t * stateStride, kernel.StandardActivationBytes(n));
                    for (var r = 0; r < rows; r++)
                    {
                        var expected = QuantReference.Dot(GgmlType.TQ1_0, weights.AsSpan(r * rowBytes, rowBytes), standard, n);
                        Assert.True(expected.Equals(y[t * yStride + r]), $"{kernel.Name}: {codes} n={n} rows={rows} token {t}/{tokens} row {r}: reference {expected}, MatMat {y[t * yStride + r]}");
                    }
                    for (var r = rows; r < yStride; r++)
                        Assert.True(float.IsNaN(y[t * yStride + r]), $"MatMat wrote outside its rows (token {t}, column {r})");
                }
            }
        }
    }

    [Fact]
    public void Non_finite_scales_in_tile_rows_and_foreign_shapes_are_refused()
    {
        foreach (var kernel in Kernels())
        {
            var rng = new Random(5);
            const int n = 512, rows = 20;
            var weights = Weights(rng, n, rows, Codes.Quantized);
            var rowBytes = weights.Length / rows;
            var stride = kernel.RepackedRowBytes(rowBytes, n);
            using var packed = new Native(rows * stride, 0);
            using var state = new Native(kernel.ActivationBytes(n), 0);
            fixed (float* px = RandomRow(rng, n, 1))
                kernel.PrepareActivations(px, n, state.Pointer);
            var y = new float[rows];
            fixed (byte* pw = weights)
            fixed (float* py = y)
            {
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes + 2, rows - 1, n, packed.Pointer));
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n + 32, packed.Pointer));
                Assert.False(kernel.TryPrepareWeights(pw, 66 * 2, rows, n, packed.Pointer)); // TQ2_0's row size
                // A non-finite d in a tail row is fine (that row stays a TQ2_0 row for the exact row dot); in a tile row it is not.
                MemoryMarshal.Write(weights.AsSpan(18 * rowBytes + BlockBytes + 52), Half.PositiveInfinity);
                Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                kernel.MatVec(packed.Pointer, stride, rows, state.Pointer, n, py);
                var standard = state.Span[..kernel.StandardActivationBytes(n)];
                Assert.Equal(QuantReference.Dot(GgmlType.TQ1_0, weights.AsSpan(18 * rowBytes, rowBytes), standard, n), y[18]);
                MemoryMarshal.Write(weights.AsSpan(15 * rowBytes + 52), Half.NaN);
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                MemoryMarshal.Write(weights.AsSpan(15 * rowBytes + 52), Half.NegativeInfinity);
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            }
        }
    }

    [Fact]
    public void The_table_offers_it_for_TQ1_0_wherever_the_TQ2_0_tiles_run()
    {
        foreach (var isa in KernelIsa.Supported)
        {
            var kernels = KernelTable.RepackingKernels(GgmlType.TQ1_0, isa);
            var converted = kernels.SingleOrDefault(k => k is TQ1_0InterleavedMatVec);
            Assert.Equal(isa is InstructionSet.Avx2 or InstructionSet.Avx512 && TQ2_0InterleavedMatVec.IsSupportedAt(isa), converted is not null);
            if (converted is null)
                continue;
            Assert.Equal(isa, converted.Isa);
            Assert.Equal(GgmlType.TQ1_0, converted.WeightType);
            Assert.Equal(GgmlType.Q8_K, converted.ActivationType);
            Assert.True(converted.RepacksWeights);
            Assert.False(converted.UsesLookupTables);
            Assert.Equal(16, converted.RowTile);
            Assert.Equal(66L * 4, converted.RepackedRowBytes(54L * 4, 1024));
            // Ahead of the 5-trit tables: near ties go to the kernel with GEMM tiles for prefill.
            Assert.Same(converted, kernels[0]);
        }
    }
}
