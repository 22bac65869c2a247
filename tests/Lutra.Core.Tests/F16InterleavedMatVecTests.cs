using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The 16-row interleaved F16 kernel against llama.cpp's reference dot (products of f16 values summed in double).
/// Its f32 sum runs in four column phases, so it is held to f32 rounding of the sum, 1e-5·Σ|w·a|; MatMat must
/// equal MatVec bit for bit (the same phases per token).
/// </summary>
public unsafe class F16InterleavedMatVecTests
{
    private static F16InterleavedMatVec Kernel()
    {
        if (!F16InterleavedMatVec.IsSupported)
            Assert.Skip("the interleaved F16 kernel needs AVX-512");
        var kernel = new F16InterleavedMatVec();
        Assert.Contains(KernelTable.RepackingKernels(GgmlType.F16, InstructionSet.Avx512), k => k is F16InterleavedMatVec);
        return kernel;
    }

    private static byte[] Weights(Random rng, int n, int rows)
    {
        var h = new Half[n * rows];
        for (var i = 0; i < h.Length; i++)
        {
            h[i] = (i % 11) switch
            {
                0 => BitConverter.UInt16BitsToHalf((ushort)(rng.Next(1, 0x400) | (rng.Next(2) << 15))), // subnormal
                1 => (Half)0,
                2 => (Half)(-(rng.NextDouble() * 60000)),
                _ => (Half)(rng.NextDouble() * 2 - 1),
            };
        }
        return MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
    }

    [Fact]
    public void MatVec_and_MatMat_match_the_reference_dot()
    {
        var kernel = Kernel();
        var rng = new Random(4);
        foreach (var (n, rows, tokens) in new[] { (64, 16, 1), (67, 17, 2), (5, 33, 3), (256, 47, 4), (130, 16, 7), (1000, 35, 9) })
        {
            var weights = Weights(rng, n, rows);
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
                    QuantReference.QuantizeActivations(GgmlType.F16, x, expected);
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
                        var af = MemoryMarshal.Cast<byte, Half>(activations);
                        for (var r = 0; r < rows; r++)
                        {
                            var row = weights.AsSpan(r * rowBytes, rowBytes);
                            var wf = MemoryMarshal.Cast<byte, Half>(row);
                            var magnitude = 0.0;
                            for (var i = 0; i < n; i++)
                                magnitude += Math.Abs((double)(float)wf[i] * (float)af[i]);
                            var reference = QuantReference.Dot(GgmlType.F16, row, activations, n);
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
    public void Inf_and_NaN_weights_in_a_tile_are_refused()
    {
        var kernel = Kernel();
        var weights = Weights(new Random(5), 40, 20);
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
}
