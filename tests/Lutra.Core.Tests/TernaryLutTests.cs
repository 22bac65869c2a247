using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The exact 5-trit lookup-table kernels (TQ1_0, TQ2_0) against llama.cpp's reference dot product and against a
/// <c>long</c> oracle Σ (t − 1)·q built from the reference dequantized trits and the reference Q8_K activations.
/// </summary>
public unsafe class TernaryLutTests
{
    public static TheoryData<GgmlType> Types() => [GgmlType.TQ1_0, GgmlType.TQ2_0];

    private static TernaryLutMatVecAvx512 Kernel(GgmlType type)
    {
        if (!TernaryLutMatVecAvx512.IsSupported)
            Assert.Skip("the ternary LUT kernels need AVX-512 VBMI");
        return type == GgmlType.TQ1_0 ? new TQ1_0LutMatVecAvx512() : new TQ2_0LutMatVecAvx512();
    }

    /// <summary>Prepares, repacks and multiplies; the rows are run in calls split at <paramref name="splits"/> (tile multiples).</summary>
    private static (float[] Y, byte[] Activations) Run(TernaryLutMatVecAvx512 kernel, byte[] weights, float[] x, int rows, params int[] splits)
    {
        var n = x.Length;
        var rowBytes = weights.Length / rows;
        using var state = new Native(kernel.ActivationBytes(n));
        using var packed = new Native(weights.Length);
        var y = new float[rows];
        fixed (float* px = x)
        fixed (byte* pw = weights)
        fixed (float* py = y)
        {
            kernel.PrepareActivations(px, n, state.Pointer);
            Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
            var bounds = splits.Append(rows).ToArray();
            var start = 0;
            foreach (var end in bounds)
            {
                kernel.MatVec(packed.Pointer + (long)start * rowBytes, rowBytes, end - start, state.Pointer, n, py + start);
                start = end;
            }
        }
        return (y, new Span<byte>(state.Pointer, kernel.StandardActivationBytes(n)).ToArray());
    }

    private static byte[] Quantize(GgmlType type, float[][] rows)
    {
        var n = rows[0].Length;
        var rowBytes = (int)QuantTypes.Get(type).RowBytes(n);
        var bytes = new byte[rowBytes * rows.Length];
        for (var r = 0; r < rows.Length; r++)
            QuantReference.Quantize(type, rows[r], bytes.AsSpan(r * rowBytes, rowBytes));
        return bytes;
    }

    /// <summary>Σ (t − 1)·q per row, each super-block's integer sum times d_w·d_a, summed exactly in double.</summary>
    private static double[] Oracle(GgmlType type, byte[] weights, byte[] activations, int n, int rows)
    {
        var rowBytes = weights.Length / rows;
        var blockBytes = (int)QuantTypes.Get(type).BlockBytes;
        var w = new float[n];
        var result = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            var row = weights.AsSpan(r * rowBytes, rowBytes);
            QuantReference.Dequantize(type, row, w);
            for (var b = 0; b < n / 256; b++)
            {
                var dw = (float)MemoryMarshal.Read<Half>(row[((b + 1) * blockBytes - 2)..]);
                var da = MemoryMarshal.Read<float>(activations.AsSpan(b * 292));
                long sum = 0;
                for (var i = 0; i < 256; i++)
                {
                    var t = dw == 0 ? 0 : w[256 * b + i] / dw; // exact: the dequantized value is (t − 1)·d_w
                    sum += (long)t * (sbyte)activations[b * 292 + 4 + i];
                }
                Assert.True(Math.Abs(sum) <= 32512);
                result[r] += sum * (double)(dw * da);
            }
        }
        return result;
    }

    private static float[] Row(int n, Func<int, float> value)
    {
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = value(i);
        return x;
    }

    public static TheoryData<GgmlType, string, int, int> ExactCases()
    {
        var data = new TheoryData<GgmlType, string, int, int>();
        foreach (var type in new[] { GgmlType.TQ1_0, GgmlType.TQ2_0 })
        {
            foreach (var pattern in new[] { "plus", "minus", "random", "alternating", "zero-blocks" })
            {
                data.Add(type, pattern, 512, 256 + 17);
                data.Add(type, pattern, 14336, 256 + 3);
            }
        }
        return data;
    }

    /// <summary>
    /// Weights with d_w = 1 and integer activations whose Q8_K scale is ±1, so every output is an integer well
    /// inside f32's exact range: the kernel must equal the oracle bit for bit. Saturated ±127 activations with
    /// all-+1 or all-−1 weights drive every super-block sum to ±32512, the int16 limit of the design.
    /// </summary>
    [Theory]
    [MemberData(nameof(ExactCases))]
    public void Integer_sums_are_exact(GgmlType type, string pattern, int n, int rows)
    {
        var kernel = Kernel(type);
        var rng = new Random(n + rows + pattern.Length);
        var weightRows = new float[rows][];
        for (var r = 0; r < rows; r++)
        {
            weightRows[r] = pattern switch
            {
                "plus" => Row(n, _ => 1),
                "minus" => Row(n, _ => -1),
                "alternating" => Row(n, i => (i + r) % 3 - 1),
                "zero-blocks" => Row(n, i => i / 256 % 2 == 0 ? 0 : rng.Next(3) - 1),
                _ => Row(n, _ => rng.Next(3) - 1),
            };
        }
        var x = pattern switch
        {
            "plus" => Row(n, _ => 127),
            "minus" => Row(n, _ => -127),
            "alternating" => Row(n, i => i % 2 == 0 ? 127 : -127),
            _ => Row(n, i => i % 256 == 0 ? 127 : rng.Next(-127, 128)),
        };
        var weights = Quantize(type, weightRows);
        var (y, activations) = Run(kernel, weights, x, rows, 256);
        var expected = Oracle(type, weights, activations, n, rows);
        for (var r = 0; r < rows; r++)
            Assert.True(expected[r] == y[r], $"{type} {pattern} n={n} row {r}: oracle {expected[r]}, kernel {y[r]}");
    }

    /// <summary>
    /// Row blocks built around the layout's sign bookkeeping: the count c of positive five-trit groups (stored
    /// negated past 25, and cancelled by the last group's entry, which holds element 255 too) at 0, 24, 25, 26,
    /// 27 and 51 positive groups, every sign of element 255, and saturated activations that push the block sums
    /// to their extremes. The kernel must equal the oracle bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Sign_counts_at_the_last_table_edges_are_exact(GgmlType type)
    {
        var kernel = Kernel(type);
        var rng = new Random(19);
        var configs = new List<(int Positive, int Negative, int Last)>();
        foreach (var positive in new[] { 0, 1, 24, 25, 26, 27, 50, 51 })
            foreach (var negative in new[] { 0, 1, 24, 25, 26, 51 - positive })
                if (positive + negative <= 51)
                    foreach (var last in new[] { -1, 0, 1 })
                        configs.Add((positive, negative, last));
        const int n = 1024, rows = 512 + 256 + 5; // a 512-row tile, a 256-row tile and GGUF-layout rows
        var weightRows = new float[rows][];
        for (var r = 0; r < rows; r++)
        {
            weightRows[r] = new float[n];
            for (var b = 0; b < n / 256; b++)
            {
                var (positive, negative, last) = configs[(r + 37 * b) % configs.Count];
                var signs = Enumerable.Repeat(1, positive).Concat(Enumerable.Repeat(-1, negative))
                    .Concat(Enumerable.Repeat(0, 51 - positive - negative)).OrderBy(_ => rng.Next()).ToArray();
                for (var g = 0; g < 51; g++)
                {
                    // Saturated groups (all trits equal) half the time, else any five trits of the wanted sign.
                    var trits = new int[5];
                    if (signs[g] != 0 && rng.Next(2) == 0)
                        Array.Fill(trits, signs[g]);
                    else
                        do
                        {
                            for (var j = 0; j < 5; j++)
                                trits[j] = signs[g] == 0 ? 0 : rng.Next(3) - 1;
                        } while (Math.Sign(trits[0] + 3 * trits[1] + 9 * trits[2] + 27 * trits[3] + 81 * trits[4]) != signs[g]);
                    for (var j = 0; j < 5; j++)
                        weightRows[r][256 * b + 5 * g + j] = trits[j];
                }
                weightRows[r][256 * b + 255] = last;
            }
        }
        foreach (var activations in new[] { Row(n, _ => 127), Row(n, _ => -127), Row(n, i => i % 256 == 0 ? 127 : 127 * (rng.Next(2) * 2 - 1)) })
        {
            var weights = Quantize(type, weightRows);
            var (y, state) = Run(kernel, weights, activations, rows, 512);
            var expected = Oracle(type, weights, state, n, rows);
            for (var r = 0; r < rows; r++)
                Assert.True(expected[r] == y[r], $"{type} row {r}: oracle {expected[r]}, kernel {y[r]}");
        }
    }

    /// <summary>
    /// The kernel's own f16 → f32 scale conversion on the values where bit tricks go wrong: ±0, subnormals
    /// (smallest, largest, negative), the smallest normal, ±1 and the largest finite value. Sparse weights keep
    /// |Σ| &lt; 2¹³ so that every product is exact in f32 and the kernel must equal the oracle bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Special_f16_scales_are_exact(GgmlType type)
    {
        var kernel = Kernel(type);
        var rng = new Random(23);
        ushort[] scales = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x1234, 0x9234];
        const int n = 256, rows = 512 + 256 + 5;
        var weightRows = new float[rows][];
        for (var r = 0; r < rows; r++)
        {
            weightRows[r] = new float[n];
            for (var k = 0; k < 40; k++)
                weightRows[r][rng.Next(n)] = rng.Next(2) * 2 - 1;
            weightRows[r][r % n] = 1; // max |w| = 1: the quantized scale is 1, replaced below
        }
        var weights = Quantize(type, weightRows);
        var blockBytes = (int)QuantTypes.Get(type).BlockBytes;
        for (var r = 0; r < rows; r++)
            MemoryMarshal.Write(weights.AsSpan(r * blockBytes + blockBytes - 2), scales[r % scales.Length]);
        var x = Row(n, i => i == 0 ? 127 : 127 * (rng.Next(2) * 2 - 1));
        var (y, state) = Run(kernel, weights, x, rows, 512);
        var expected = Oracle(type, weights, state, n, rows);
        for (var r = 0; r < rows; r++)
            Assert.True(expected[r] == y[r], $"{type} row {r} scale 0x{scales[r % scales.Length]:X4}: oracle {expected[r]}, kernel {y[r]}");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Random_rows_match_the_reference_dot(GgmlType type)
    {
        var kernel = Kernel(type);
        var rng = new Random(5);
        foreach (var (n, rows) in new[] { (256, 300), (768, 513), (4096, 256), (1024, 7) })
        {
            var weightRows = new float[rows][];
            for (var r = 0; r < rows; r++)
                weightRows[r] = Row(n, _ => (float)(rng.NextDouble() - 0.5));
            var x = Row(n, _ => (float)(rng.NextDouble() * 4 - 2));
            var weights = Quantize(type, weightRows);
            AssertMatchesReference(type, kernel, weights, x, rows);
        }
    }

    /// <summary>Raw random bytes: every TQ1_0 byte value (including those past 242) and every TQ2_0 code but 3.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Raw_codes_match_the_reference_dot(GgmlType type)
    {
        var kernel = Kernel(type);
        var rng = new Random(11);
        const int n = 1024, rows = 260;
        var info = QuantTypes.Get(type);
        var weights = new byte[info.RowBytes(n) * rows];
        rng.NextBytes(weights);
        for (var block = 0; block < weights.Length / info.BlockBytes; block++)
        {
            var start = block * (int)info.BlockBytes;
            MemoryMarshal.Write(weights.AsSpan(start + (int)info.BlockBytes - 2), (Half)(rng.NextDouble() - 0.5));
        }
        if (type == GgmlType.TQ2_0)
            for (var i = 0; i < weights.Length; i++)
                if (i % info.BlockBytes < 64)
                    weights[i] = ClearCodeThree(weights[i]);
        var x = Row(n, _ => (float)(rng.NextDouble() * 2 - 1));
        AssertMatchesReference(type, kernel, weights, x, rows);
    }

    private static byte ClearCodeThree(byte b)
    {
        for (var f = 0; f < 8; f += 2)
            if (((b >> f) & 3) == 3)
                b = (byte)(b & ~(1 << f));
        return b;
    }

    private static void AssertMatchesReference(GgmlType type, TernaryLutMatVecAvx512 kernel, byte[] weights, float[] x, int rows)
    {
        var n = x.Length;
        var rowBytes = weights.Length / rows;
        var (y, activations) = Run(kernel, weights, x, rows);
        var wf = new float[n];
        var af = new float[n];
        QuantReference.Dequantize(GgmlType.Q8_K, activations, af);
        for (var r = 0; r < rows; r++)
        {
            var row = weights.AsSpan(r * rowBytes, rowBytes);
            var expected = QuantReference.Dot(type, row, activations, n);
            QuantReference.Dequantize(type, row, wf);
            var magnitude = 0.0;
            for (var i = 0; i < n; i++)
                magnitude += Math.Abs((double)wf[i] * af[i]);
            Assert.True(Math.Abs(expected - y[r]) <= 1e-5 * magnitude + 1e-6,
                $"{type} n={n} row {r}/{rows}: reference {expected}, kernel {y[r]}, sum |w*a| {magnitude}");
        }
    }

    [Fact]
    public void Weights_the_layout_cannot_hold_are_refused()
    {
        var rng = new Random(3);
        var tq2 = Kernel(GgmlType.TQ2_0);
        var rows = 256;
        var weightRows = new float[rows][];
        for (var r = 0; r < rows; r++)
            weightRows[r] = Row(256, _ => rng.Next(3) - 1);
        var weights = Quantize(GgmlType.TQ2_0, weightRows);
        weights[100 * 66 + 5] |= 0b11; // a 2-bit code 3 (value +2) in row 100
        var tq1 = Kernel(GgmlType.TQ1_0);
        var tq1Weights = Quantize(GgmlType.TQ1_0, weightRows);
        MemoryMarshal.Write(tq1Weights.AsSpan(7 * 54 + 52), Half.PositiveInfinity);
        using var packed = new Native(weights.Length);
        fixed (byte* pw = weights)
        fixed (byte* p1 = tq1Weights)
        {
            Assert.False(tq2.TryPrepareWeights(pw, 66, rows, 256, packed.Pointer));
            Assert.False(tq1.TryPrepareWeights(p1, 54, rows, 256, packed.Pointer));
            Assert.False(tq1.TryPrepareWeights(p1, 54, rows, 250, packed.Pointer));
        }
    }

    [Fact]
    public void The_table_offers_the_repacking_kernels_only_where_they_run()
    {
        foreach (var isa in KernelIsa.Supported)
        {
            foreach (var type in new[] { GgmlType.TQ1_0, GgmlType.TQ2_0 })
            {
                var kernel = KernelTable.RepackingKernels(type, isa).SingleOrDefault(k => k is TernaryLutMatVecAvx512);
                var expected = isa == InstructionSet.Avx512 && TernaryLutMatVecAvx512.IsSupported;
                Assert.Equal(expected, kernel is not null);
                if (kernel is not null)
                {
                    Assert.True(kernel.RepacksWeights);
                    Assert.Equal(type, kernel.WeightType);
                }
            }
            Assert.Empty(KernelTable.RepackingKernels(GgmlType.F32, isa));
            Assert.False(KernelTable.Get(GgmlType.TQ2_0, isa).RepacksWeights);
        }
    }
}
