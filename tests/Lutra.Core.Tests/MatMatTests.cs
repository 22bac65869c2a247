using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;

namespace Lutra.Core.Tests;

/// <summary>The batched entry (GEMM tiles) of every kernel against its own MatVec, token by token, and the reference dot.</summary>
public unsafe class MatMatTests
{
    public static TheoryData<GgmlType, InstructionSet> TypesAndIsas()
    {
        var data = new TheoryData<GgmlType, InstructionSet>();
        foreach (var info in QuantTypes.All)
        {
            if (!info.IsSupported || info.Type is GgmlType.Q8_1 or GgmlType.Q8_K)
                continue;
            foreach (var isa in KernelIsa.Supported)
                data.Add(info.Type, isa);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void MatMat_matches_MatVec_for_every_token_and_row(GgmlType type, InstructionSet isa) => Check(KernelTable.Get(type, isa));

    [Fact]
    public void Both_AVX512_Q4_0_kernels_match_whichever_the_table_picks()
    {
        if (!KernelIsa.IsSupported(InstructionSet.Avx512))
            Assert.Skip("this CPU has no AVX-512");
        Check(new Q4_0MatVecAvx512());
        if (System.Runtime.Intrinsics.X86.AvxVnni.IsSupported)
            Check(new Q4_0MatVecAvxVnni());
    }

    private static void Check(MatVecKernel kernel)
    {
        var type = kernel.WeightType;
        var info = QuantTypes.Get(type);
        var rng = new Random(7);
        // Odd and even block counts (the pair tail), rows around the 2-row tile, tokens around the 4-token tile.
        foreach (var (blocks, rows, tokens) in new[] { (1, 1, 2), (2, 3, 4), (3, 4, 5), (7, 5, 8), (8, 16, 9), (33, 7, 3) })
        {
            var n = blocks * Math.Max(info.BlockSize, info.BlockSize == 32 ? 32 : 256);
            var rowBytes = (int)info.RowBytes(n);
            var weights = new byte[rowBytes * rows];
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(type, RandomRow(rng, n, 0.5f), weights.AsSpan(r * rowBytes, rowBytes));
            var stride = kernel.ActivationBytes(n);
            var states = (byte*)NativeMemory.AlignedAlloc((nuint)(stride * tokens), 64);
            try
            {
                var x = new float[tokens][];
                for (var t = 0; t < tokens; t++)
                {
                    x[t] = RandomRow(rng, n, 2f);
                    fixed (float* px = x[t])
                        kernel.PrepareActivations(px, n, states + t * stride);
                }
                // A y stride wider than the rows: the kernel must write only its own cells.
                var yStride = rows + 3;
                var y = new float[tokens * yStride];
                Array.Fill(y, float.NaN);
                var expected = new float[rows];
                fixed (byte* pw = weights)
                fixed (float* py = y)
                fixed (float* pe = expected)
                {
                    kernel.MatMat(pw, rowBytes, rows, states, stride, tokens, n, py, yStride);
                    for (var t = 0; t < tokens; t++)
                    {
                        kernel.MatVec(pw, rowBytes, rows, states + t * stride, n, pe);
                        var activations = new ReadOnlySpan<byte>(states + t * stride, kernel.StandardActivationBytes(n));
                        var af = new float[n];
                        var wf = new float[n];
                        QuantReference.Dequantize(kernel.ActivationType, activations, af);
                        for (var r = 0; r < rows; r++)
                        {
                            var row = weights.AsSpan(r * rowBytes, rowBytes);
                            QuantReference.Dequantize(type, row, wf);
                            var magnitude = 0.0;
                            for (var i = 0; i < n; i++)
                                magnitude += Math.Abs((double)wf[i] * af[i]);
                            var reference = QuantReference.Dot(type, row, activations, n);
                            var got = y[t * yStride + r];
                            // Integer block sums are exact; only the float combination order differs.
                            Assert.True(Math.Abs(expected[r] - got) <= 1e-5 * magnitude + 1e-6,
                                $"{kernel} n={n} token {t}/{tokens} row {r}/{rows}: MatVec {expected[r]}, MatMat {got}, sum |w*a| {magnitude}");
                            Assert.True(Math.Abs(reference - got) <= 1e-5 * magnitude + 1e-6,
                                $"{kernel} n={n} token {t}/{tokens} row {r}/{rows}: reference {reference}, MatMat {got}");
                        }
                        for (var r = rows; r < yStride && t * yStride + r < y.Length; r++)
                            Assert.True(float.IsNaN(y[t * yStride + r]), $"{kernel}: MatMat wrote outside its rows (token {t}, column {r})");
                    }
                }
            }
            finally
            {
                NativeMemory.AlignedFree(states);
            }
        }
    }
}
