using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;

namespace Lutra.Core.Tests;

/// <summary>
/// The 16-row interleaved Q6_K kernel against llama.cpp's reference dot product. Its integer sums are exact and its
/// float arithmetic per super-block is the reference's, in the reference's order, so every output must equal
/// <see cref="QuantReference.Dot"/> bit for bit.
/// </summary>
public unsafe class Q6_KInterleavedMatVecTests
{
    private const int RowBytesPerBlock = 210;
    private const int DOffset = 208;

    private static Q6_KInterleavedMatVec Kernel()
    {
        if (!Q6_KInterleavedMatVec.IsSupported)
            Assert.Skip("the interleaved Q6_K kernel needs AVX-512 BW");
        var kernel = new Q6_KInterleavedMatVec();
        Assert.Contains(KernelTable.RepackingKernels(GgmlType.Q6_K, InstructionSet.Avx512), k => k is Q6_KInterleavedMatVec);
        return kernel;
    }

    public enum WeightKind
    {
        /// <summary>Rows quantized by the reference quantizer.</summary>
        Quantized,

        /// <summary>Random bytes (every code and int8 scale) with random finite d: zero, subnormal, negative.</summary>
        Raw,

        /// <summary>Every code 63 and every scale −128 or 127: the largest int16 partial sums the kernel forms.</summary>
        Extreme,
    }

    private static byte[] Weights(Random rng, int n, int rows, WeightKind kind)
    {
        var rowBytes = n / 256 * RowBytesPerBlock;
        var bytes = new byte[rowBytes * rows];
        if (kind == WeightKind.Quantized)
        {
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(GgmlType.Q6_K, RandomRow(rng, n, 0.5 + r % 3), bytes.AsSpan(r * rowBytes, rowBytes));
            return bytes;
        }
        rng.NextBytes(bytes);
        for (var block = 0; block < bytes.Length / RowBytesPerBlock; block++)
        {
            var b = bytes.AsSpan(block * RowBytesPerBlock, RowBytesPerBlock);
            if (kind == WeightKind.Extreme)
            {
                b[..192].Fill(0xFF);
                b[192..208].Fill(block % 2 == 0 ? (byte)0x80 : (byte)0x7F);
            }
            var d = (block % 5) switch
            {
                0 => (Half)0,
                1 => BitConverter.UInt16BitsToHalf((ushort)rng.Next(1, 0x400)), // subnormal
                2 => (Half)(-(rng.NextDouble() * 100)),
                _ => (Half)((rng.NextDouble() - 0.5) * 0.02),
            };
            MemoryMarshal.Write(b[DOffset..], d);
        }
        return bytes;
    }

    /// <summary>Token 0 is −127 everywhere (the largest int16 partial sums against code 63), token 1 ±127, the rest random.</summary>
    private static float[] Activations(Random rng, int n, int token) => token switch
    {
        0 => Enumerable.Repeat(-3f, n).ToArray(),
        1 => RandomRow(rng, n, 1).Select(v => v < 0 ? -3f : 3f).ToArray(),
        _ => RandomRow(rng, n, 4),
    };

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(8)]
    public void MatVec_equals_the_reference_dot_exactly(int blocks)
    {
        var kernel = Kernel();
        var rng = new Random(blocks);
        var n = blocks * 256;
        foreach (var kind in Enum.GetValues<WeightKind>())
        {
            foreach (var (rows, splits) in new (int, int[])[] { (16 * 3 + 5, [16, 48]), (5, []), (16, []), (32, [16]) })
            {
                var weights = Weights(rng, n, rows, kind);
                var rowBytes = weights.Length / rows;
                // A guard region after the matrix: the repacked layout has exactly the GGUF size.
                using var packed = new Native(weights.Length + 64, 0x5A);
                fixed (byte* pw = weights)
                    Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                Assert.True(packed.Span[weights.Length..].IndexOfAnyExcept((byte)0x5A) < 0, "TryPrepareWeights wrote past rows·rowBytes");
                using var state = new Native(kernel.ActivationBytes(n), 0);
                for (var t = 0; t < 3; t++)
                {
                    var x = Activations(rng, n, t);
                    RepackedKernelChecks.MatVecEqualsReference(kernel, GgmlType.Q6_K, weights, packed, state, rows, n, x, splits, $"{kind} token {t}");
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
    public void MatMat_equals_the_reference_dot_exactly(int tokens)
    {
        var kernel = Kernel();
        var rng = new Random(tokens);
        foreach (var (blocks, rows, kind) in new[] { (1, 16 * 2 + 5, WeightKind.Raw), (3, 16, WeightKind.Extreme), (8, 16 + 3, WeightKind.Quantized) })
        {
            var n = blocks * 256;
            var weights = Weights(rng, n, rows, kind);
            var rowBytes = weights.Length / rows;
            using var packed = new Native(weights.Length, 0);
            fixed (byte* pw = weights)
                Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            var stride = kernel.ActivationBytes(n);
            using var states = new Native((long)stride * tokens, 0);
            for (var t = 0; t < tokens; t++)
            {
                fixed (float* px = Activations(rng, n, t))
                    kernel.PrepareActivations(px, n, states.Pointer + (long)t * stride);
            }
            // A y stride wider than the rows: the kernel must write only its own cells. Two calls split at a tile.
            var yStride = rows + 5;
            var y = new float[tokens * yStride];
            Array.Fill(y, float.NaN);
            fixed (float* py = y)
            {
                kernel.MatMat(packed.Pointer, rowBytes, 16, states.Pointer, stride, tokens, n, py, yStride);
                kernel.MatMat(packed.Pointer + 16 * rowBytes, rowBytes, rows - 16, states.Pointer, stride, tokens, n, py + 16, yStride);
            }
            for (var t = 0; t < tokens; t++)
            {
                var standard = new ReadOnlySpan<byte>(states.Pointer + (long)t * stride, kernel.StandardActivationBytes(n));
                for (var r = 0; r < rows; r++)
                {
                    var expected = QuantReference.Dot(GgmlType.Q6_K, weights.AsSpan(r * rowBytes, rowBytes), standard, n);
                    Assert.True(expected.Equals(y[t * yStride + r]), $"{kind} n={n} rows={rows} token {t}/{tokens} row {r}: reference {expected}, MatMat {y[t * yStride + r]}");
                }
                for (var r = rows; r < yStride; r++)
                    Assert.True(float.IsNaN(y[t * yStride + r]), $"MatMat wrote outside its rows (token {t}, column {r})");
            }
        }
    }

    [Fact]
    public void Matrices_the_layout_cannot_hold_are_refused()
    {
        var kernel = Kernel();
        var rng = new Random(3);
        const int n = 512, rows = 20;
        var weights = Weights(rng, n, rows, WeightKind.Quantized);
        var rowBytes = weights.Length / rows;
        using var packed = new Native(weights.Length, 0);
        fixed (byte* pw = weights)
        {
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes + 2, rows - 1, n, packed.Pointer));
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n + 32, packed.Pointer));
            // A non-finite d in a tail row is fine (that row keeps the GGUF layout); in a tile row it is not.
            MemoryMarshal.Write(weights.AsSpan(17 * rowBytes + RowBytesPerBlock + DOffset), Half.PositiveInfinity);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(5 * rowBytes + RowBytesPerBlock + DOffset), Half.NaN);
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(5 * rowBytes + RowBytesPerBlock + DOffset), (Half)0.5f);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(15 * rowBytes + DOffset), Half.NegativeInfinity);
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
        }
    }
}
