using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The lookup-table kernels' MatMat (the bit-serial Q4_0/Q4_1 kernel batches 4 tokens per weight pass; the others
/// run MatVec per token) against the same kernel's MatVec run token by token: bit-identical, for token counts
/// around the group size, rows off the tile size and long rows. MatVec itself is checked against llama.cpp's
/// reference dot product by the ternary and bit-serial tests.
/// </summary>
public unsafe class BatchedLutTests
{
    public static TheoryData<GgmlType, int, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, int, int, int>();
        foreach (var type in new[] { GgmlType.TQ1_0, GgmlType.TQ2_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q2_K })
        {
            var tile = Tile(type);
            foreach (var tokens in new[] { 1, 2, 3, 4, 7, 8, 9, 17 })
                data.Add(type, 512, 2 * tile + 37, tokens);
            data.Add(type, 14336, tile + 5, 9);
        }
        return data;
    }

    private static int Tile(GgmlType type) => type is GgmlType.TQ1_0 or GgmlType.TQ2_0 ? 256 : BitSerialLutMatVec.TileRows(type);

    private static MatVecKernel Kernel(GgmlType type)
    {
        switch (type)
        {
            case GgmlType.TQ1_0 or GgmlType.TQ2_0:
                if (!TernaryLutMatVecAvx512.IsSupported)
                    Assert.Skip("the ternary LUT kernels need AVX-512 VBMI");
                return type == GgmlType.TQ1_0 ? new TQ1_0LutMatVecAvx512() : new TQ2_0LutMatVecAvx512();
            default:
                if (!BitSerialLutAvx512.IsSupported || !KernelIsa.IsSupported(InstructionSet.Avx512))
                    Assert.Skip("the batched bit-serial LUT kernel needs AVX-512 BW");
                return new BitSerialLutAvx512(type);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatMatEqualsMatVecPerToken(GgmlType type, int n, int rows, int tokens)
    {
        var kernel = Kernel(type);
        var rng = new Random(n + 31 * rows + 1009 * tokens + (int)type);
        var rowBytes = (int)QuantTypes.Get(type).RowBytes(n);
        var weights = new byte[rowBytes * rows];
        var source = new float[n];
        for (var r = 0; r < rows; r++)
        {
            for (var i = 0; i < n; i++)
                source[i] = (float)(rng.NextDouble() - 0.5) * (1 + r % 5);
            QuantReference.Quantize(type, source, weights.AsSpan(r * rowBytes, rowBytes));
        }
        var stride = kernel.ActivationBytes(n);
        var yStride = rows + 3;
        using var states = new Native((long)stride * tokens);
        using var packed = new Native(weights.Length);
        var expected = new float[tokens * yStride];
        var whole = new float[tokens * yStride];
        var tiled = new float[tokens * yStride];
        fixed (byte* pw = weights)
        fixed (float* pe = expected, py = whole, pt = tiled)
        {
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            var x = new float[n];
            for (var t = 0; t < tokens; t++)
            {
                for (var i = 0; i < n; i++)
                    x[i] = (float)((rng.NextDouble() - 0.5) * (t % 3 == 0 ? 4 : 0.25));
                fixed (float* px = x)
                    kernel.PrepareActivations(px, n, states.Pointer + (long)t * stride);
                kernel.MatVec(packed.Pointer, rowBytes, rows, states.Pointer + (long)t * stride, n, pe + t * yStride);
            }
            // One call over every row, and calls of one tile each as the matmul dispatcher makes them.
            kernel.MatMat(packed.Pointer, rowBytes, rows, states.Pointer, stride, tokens, n, py, yStride);
            var tile = kernel.RowTile;
            for (var first = 0; first < rows; first += tile)
                kernel.MatMat(packed.Pointer + (long)first * rowBytes, rowBytes, Math.Min(tile, rows - first), states.Pointer, stride, tokens, n,
                    pt + first, yStride);
        }
        for (var t = 0; t < tokens; t++)
        {
            var want = Bits(expected.AsSpan(t * yStride, rows));
            Assert.Equal(want, Bits(whole.AsSpan(t * yStride, rows)));
            Assert.Equal(want, Bits(tiled.AsSpan(t * yStride, rows)));
        }
    }

    private static int[] Bits(ReadOnlySpan<float> values)
    {
        var bits = new int[values.Length];
        for (var i = 0; i < values.Length; i++)
            bits[i] = BitConverter.SingleToInt32Bits(values[i]);
        return bits;
    }
}
