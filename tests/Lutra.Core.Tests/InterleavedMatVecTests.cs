using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;

namespace Lutra.Core.Tests;

/// <summary>
/// The 16-row interleaved Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL kernels against llama.cpp's reference dot product. Their integer block sums
/// are exact and their float arithmetic per row is the reference's, in the reference's order, so every output
/// must equal <see cref="QuantReference.Dot"/> bit for bit, through MatVec and through MatMat.
/// </summary>
public unsafe class InterleavedMatVecTests
{
    /// <summary>(type, instruction set, the kernel's optional extension: Q4_0/Q8_0 AVX-VNNI, Q4_1 GFNI): every path of the kernels.</summary>
    public static TheoryData<GgmlType, InstructionSet, bool> Kernels()
    {
        var data = new TheoryData<GgmlType, InstructionSet, bool>();
        foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q8_0 })
            foreach (var isa in new[] { InstructionSet.Avx2, InstructionSet.Avx512 })
                data.Add(type, isa, true);
        // Q4_0's AVX2 path without AVX-VNNI, Q4_1's AVX-512 path without GFNI and Q8_0's sign-transfer paths, forced
        // (the table picks them only on CPUs without those extensions).
        data.Add(GgmlType.Q4_0, InstructionSet.Avx2, false);
        data.Add(GgmlType.Q4_1, InstructionSet.Avx512, false);
        data.Add(GgmlType.Q8_0, InstructionSet.Avx2, false);
        data.Add(GgmlType.Q8_0, InstructionSet.Avx512, false);
        data.Add(GgmlType.IQ4_NL, InstructionSet.Avx512, true);
        data.Add(GgmlType.Q5_0, InstructionSet.Avx512, true);
        data.Add(GgmlType.Q5_1, InstructionSet.Avx512, true);
        return data;
    }

    /// <summary>The interleaved kernel the table registers for (type, isa); skips where this CPU has none.</summary>
    private static MatVecKernel Kernel(GgmlType type, InstructionSet isa, bool extension)
    {
        if (!extension && type == GgmlType.Q4_1)
        {
            if (!Q4_1InterleavedMatVec.IsSupported(isa))
                Assert.Skip("the Q4_1 AVX-512 path needs AVX-512 BW");
            return new Q4_1InterleavedMatVec(isa, gfni: false);
        }
        if (!extension && type == GgmlType.Q8_0)
        {
            if (!Q8_0InterleavedMatVec.IsSupported(isa, avxVnni: false))
                Assert.Skip($"the Q8_0 sign-transfer path for {isa} needs {isa} on this CPU");
            var signTransfer = new Q8_0InterleavedMatVec(isa, avxVnni: false);
            if (!AvxVnni.IsSupported)
                Assert.Contains(KernelTable.RepackingKernels(type, isa), k => k.Name == signTransfer.Name);
            return signTransfer;
        }
        if (!extension)
        {
            if (!KernelIsa.IsSupported(InstructionSet.Avx2))
                Assert.Skip("the plain AVX2 Q4_0 path needs AVX2");
            return new Q4_0InterleavedMatVec(InstructionSet.Avx2, avxVnni: false);
        }
        var supported = type switch
        {
            GgmlType.Q4_0 => Q4_0InterleavedMatVec.IsSupported(isa),
            GgmlType.Q4_1 => Q4_1InterleavedMatVec.IsSupported(isa),
            GgmlType.IQ4_NL => isa == InstructionSet.Avx512 && IQ4_NLInterleavedMatVec.IsSupported,
            GgmlType.Q5_0 or GgmlType.Q5_1 => isa == InstructionSet.Avx512 && Q5_0InterleavedMatVec.IsSupported,
            _ => Q8_0InterleavedMatVec.IsSupported(isa, avxVnni: true),
        };
        if (!supported)
            Assert.Skip($"no interleaved {type} kernel for {isa} on this CPU (Q4_0: AVX-512 BW, or AVX2 with AVX-VNNI; Q4_1: AVX-512 BW or AVX2; Q8_0: AVX-VNNI; IQ4_NL: AVX-512 BW; Q5_0, Q5_1: AVX-512 VBMI)");
        MatVecKernel kernel = type switch
        {
            GgmlType.Q4_0 => new Q4_0InterleavedMatVec(isa),
            GgmlType.Q4_1 => new Q4_1InterleavedMatVec(isa),
            GgmlType.IQ4_NL => new IQ4_NLInterleavedMatVec(),
            GgmlType.Q5_0 => new Q5_0InterleavedMatVec(),
            GgmlType.Q5_1 => new Q5_1InterleavedMatVec(),
            _ => new Q8_0InterleavedMatVec(isa),
        };
        Assert.Contains(KernelTable.RepackingKernels(type, isa), k => k.GetType() == kernel.GetType() && k.Isa == isa);
        return kernel;
    }

    /// <summary>
    /// Rows quantized by the reference quantizer, or raw random bytes with random finite scales (zero, subnormal,
    /// negative), and for Q4_1 random finite minimums of the same kinds, out of step with the scales.
    /// </summary>
    private static byte[] Weights(GgmlType type, Random rng, int n, int rows, bool raw)
    {
        var info = QuantTypes.Get(type);
        var rowBytes = (int)info.RowBytes(n);
        var bytes = new byte[rowBytes * rows];
        if (!raw)
        {
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(type, RandomRow(rng, n, 0.5 + r % 3), bytes.AsSpan(r * rowBytes, rowBytes));
            return bytes;
        }
        rng.NextBytes(bytes);
        for (var block = 0; block < bytes.Length / info.BlockBytes; block++)
        {
            MemoryMarshal.Write(bytes.AsSpan(block * (int)info.BlockBytes), RandomFiniteHalf(rng, block % 7));
            if (type is GgmlType.Q4_1 or GgmlType.Q5_1)
                MemoryMarshal.Write(bytes.AsSpan(block * (int)info.BlockBytes + 2), RandomFiniteHalf(rng, block % 5));
        }
        return bytes;
    }

    private static Half RandomFiniteHalf(Random rng, int kind) => kind switch
    {
        0 => (Half)0,
        1 => BitConverter.UInt16BitsToHalf((ushort)rng.Next(1, 0x400)), // subnormal
        2 => (Half)(-(rng.NextDouble() * 100)),
        _ => (Half)((rng.NextDouble() - 0.5) * 0.02),
    };

    private static Native Prepare(MatVecKernel kernel, Random rng, int n, int tokens, out int stride)
    {
        stride = kernel.ActivationBytes(n);
        var states = new Native((long)stride * tokens);
        for (var t = 0; t < tokens; t++)
        {
            // Token 0 saturates: every activation block holds ±127 after quantization. Tokens 1 and 2 put the f16
            // activation scales at the ends of their range (d ≈ 63000, and subnormal d).
            var x = t switch
            {
                0 => RandomRow(rng, n, 1).Select(v => v < 0 ? -3f : 3f).ToArray(),
                1 => RandomRow(rng, n, 8e6),
                2 => RandomRow(rng, n, 2e-5),
                _ => RandomRow(rng, n, 4),
            };
            fixed (float* px = x)
                kernel.PrepareActivations(px, n, states.Pointer + (long)t * stride);
            var expected = new byte[kernel.StandardActivationBytes(n)];
            QuantReference.QuantizeActivations(kernel.ActivationType, x, expected);
            Assert.True(expected.AsSpan().SequenceEqual(new ReadOnlySpan<byte>(states.Pointer + (long)t * stride, expected.Length)),
                $"{kernel}: the prepared state must begin with the reference activation row");
        }
        return states;
    }

    private static Native Repack(MatVecKernel kernel, byte[] weights, int rows, int n)
    {
        var rowBytes = weights.Length / rows;
        // A guard region after the matrix: the repacked layout has exactly the GGUF size.
        var packed = new Native(weights.Length + 64, 0x5A);
        fixed (byte* pw = weights)
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
        Assert.True(packed.Span[weights.Length..].IndexOfAnyExcept((byte)0x5A) < 0, $"{kernel}: TryPrepareWeights wrote past rows·rowBytes");
        return packed;
    }

    private static float Reference(GgmlType type, byte[] weights, int rowBytes, int row, byte* state, int n, int standardBytes) =>
        QuantReference.Dot(type, weights.AsSpan(row * rowBytes, rowBytes), new ReadOnlySpan<byte>(state, standardBytes), n);

    /// <summary>(blocks per row, rows, row splits): odd block counts, partial last tiles, all-tail matrices, several calls.</summary>
    private static readonly (int Blocks, int Rows, int[] Splits)[] Shapes =
    [
        (1, 16, []), (3, 17, []), (7, 5, []), (33, 48, [16, 32]), (8, 47, [32]), (128, 35, [16]),
    ];

    [Theory]
    [MemberData(nameof(Kernels))]
    public void MatVec_equals_the_reference_dot_exactly(GgmlType type, InstructionSet isa, bool extension)
    {
        var kernel = Kernel(type, isa, extension);
        var rng = new Random(1);
        foreach (var raw in new[] { false, true })
        {
            foreach (var (blocks, rows, splits) in Shapes)
            {
                var n = blocks * 32;
                var weights = Weights(type, rng, n, rows, raw);
                var rowBytes = weights.Length / rows;
                using var packed = Repack(kernel, weights, rows, n);
                using var states = Prepare(kernel, rng, n, 4, out var stride);
                for (var t = 0; t < 4; t++)
                {
                    var state = states.Pointer + (long)t * stride;
                    var y = new float[rows + 1];
                    y[rows] = float.NaN;
                    fixed (float* py = y)
                    {
                        var start = 0;
                        foreach (var end in splits.Append(rows))
                        {
                            kernel.MatVec(packed.Pointer + (long)start * rowBytes, rowBytes, end - start, state, n, py + start);
                            start = end;
                        }
                    }
                    for (var r = 0; r < rows; r++)
                    {
                        var expected = Reference(type, weights, rowBytes, r, state, n, kernel.StandardActivationBytes(n));
                        Assert.True(expected.Equals(y[r]), $"{kernel} raw={raw} n={n} rows={rows} token {t} row {r}: reference {expected}, kernel {y[r]}");
                    }
                    Assert.True(float.IsNaN(y[rows]), $"{kernel}: MatVec wrote past its rows");
                }
            }
        }
    }

    /// <summary>
    /// IQ4_NL's largest products: every code 0 (grid value −127) or 15 (+113) against activations all ±127 make each
    /// vpmaddubsw pair ±32258 (or ±28702), so two pairs summed in int16 would wrap.
    /// </summary>
    [Fact]
    public void IQ4_NL_extreme_codes_and_activations_do_not_overflow()
    {
        var kernel = Kernel(GgmlType.IQ4_NL, InstructionSet.Avx512, true);
        var rng = new Random(4);
        const int n = 128, rows = 16 * 2 + 3;
        var weights = Weights(GgmlType.IQ4_NL, rng, n, rows, raw: true);
        var rowBytes = weights.Length / rows;
        for (var r = 0; r < rows; r++)
            for (var b = 0; b < n / 32; b++)
                weights.AsSpan(r * rowBytes + b * 18 + 2, 16).Fill(r % 3 == 0 ? (byte)0xFF : (byte)0x00);
        using var packed = Repack(kernel, weights, rows, n);
        using var state = new Native(kernel.ActivationBytes(n));
        foreach (var value in new[] { 3f, -3f })
        {
            var x = Enumerable.Repeat(value, n).ToArray();
            fixed (float* px = x)
                kernel.PrepareActivations(px, n, state.Pointer);
            var y = new float[rows];
            fixed (float* py = y)
                kernel.MatVec(packed.Pointer, rowBytes, rows, state.Pointer, n, py);
            for (var r = 0; r < rows; r++)
            {
                var expected = Reference(GgmlType.IQ4_NL, weights, rowBytes, r, state.Pointer, n, kernel.StandardActivationBytes(n));
                Assert.True(expected.Equals(y[r]), $"all activations {value}, row {r}: reference {expected}, kernel {y[r]}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void MatMat_equals_the_reference_dot_exactly(GgmlType type, InstructionSet isa, bool extension)
    {
        var kernel = Kernel(type, isa, extension);
        var rng = new Random(2);
        foreach (var tokens in new[] { 1, 2, 3, 4, 7, 9 })
        {
            foreach (var (blocks, rows) in new[] { (3, 16), (5, 21), (33, 32), (2, 9) })
            {
                var n = blocks * 32;
                var weights = Weights(type, rng, n, rows, raw: tokens % 2 == 0);
                var rowBytes = weights.Length / rows;
                using var packed = Repack(kernel, weights, rows, n);
                using var states = Prepare(kernel, rng, n, tokens, out var stride);
                // A y stride wider than the rows: the kernel must write only its own cells.
                var yStride = rows + 5;
                var y = new float[tokens * yStride];
                Array.Fill(y, float.NaN);
                fixed (float* py = y)
                    kernel.MatMat(packed.Pointer, rowBytes, rows, states.Pointer, stride, tokens, n, py, yStride);
                for (var t = 0; t < tokens; t++)
                {
                    for (var r = 0; r < rows; r++)
                    {
                        var expected = Reference(type, weights, rowBytes, r, states.Pointer + (long)t * stride, n, kernel.StandardActivationBytes(n));
                        var got = y[t * yStride + r];
                        Assert.True(expected.Equals(got), $"{kernel} n={n} rows={rows} token {t}/{tokens} row {r}: reference {expected}, MatMat {got}");
                    }
                    for (var r = rows; r < yStride; r++)
                        Assert.True(float.IsNaN(y[t * yStride + r]), $"{kernel}: MatMat wrote outside its rows (token {t}, column {r})");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Matrices_the_layout_cannot_hold_are_refused(GgmlType type, InstructionSet isa, bool extension)
    {
        var kernel = Kernel(type, isa, extension);
        var rng = new Random(3);
        const int n = 64, rows = 20;
        var weights = Weights(type, rng, n, rows, raw: false);
        var rowBytes = weights.Length / rows;
        var blockBytes = rowBytes / 2;
        using var packed = new Native(weights.Length);
        fixed (byte* pw = weights)
        {
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes + 2, rows - 1, n, packed.Pointer));
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n + 32, packed.Pointer));
            // An Inf scale in a tail row is fine (that row keeps the GGUF layout); in a tile row it is not.
            MemoryMarshal.Write(weights.AsSpan(17 * rowBytes + blockBytes), Half.PositiveInfinity);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            MemoryMarshal.Write(weights.AsSpan(5 * rowBytes + blockBytes), Half.NaN);
            Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            if (type is GgmlType.Q4_1 or GgmlType.Q5_1)
            {
                // Q4_1's and Q5_1's minimum m (after d) is a scale too.
                MemoryMarshal.Write(weights.AsSpan(5 * rowBytes + blockBytes), (Half)1);
                Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                MemoryMarshal.Write(weights.AsSpan(15 * rowBytes + 2), Half.NegativeInfinity);
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            }
        }
    }
}
