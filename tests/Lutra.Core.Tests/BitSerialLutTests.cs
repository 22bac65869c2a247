using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The bit-serial LUT kernels (Q4_0, Q4_1, Q2_K): every SIMD variant bit-identical to the scalar form of the same
/// algorithm; every row equal to llama.cpp's reference dot product; the error against the float truth (dequantized
/// weights · x in double) within T-MAC's NMSE bound, next to the multiply-add kernels' own.
/// </summary>
public unsafe class BitSerialLutTests
{
    private static readonly GgmlType[] LutTypes = [GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q2_K];

    public static TheoryData<GgmlType> Types() => [.. LutTypes];

    /// <summary>Every variant this machine runs, whether or not the kernel table would pick it.</summary>
    private static List<BitSerialLutMatVec> Variants(GgmlType type)
    {
        var list = new List<BitSerialLutMatVec> { new BitSerialLutVector128<PortablePairSum>(type) };
        if (Ssse3.IsSupported)
            list.Add(new BitSerialLutVector128<Ssse3PairSum>(type));
        if (BitSerialLutAvx2.IsSupported)
            list.Add(new BitSerialLutAvx2(type));
        if (BitSerialLutAvx512.IsSupported && KernelIsa.IsSupported(InstructionSet.Avx512))
            list.Add(new BitSerialLutAvx512(type));
        return list;
    }

    /// <summary>Prepares, repacks (repacking kernels) and multiplies, in MatVec calls split at every second tile.</summary>
    private static float[] Run(MatVecKernel kernel, byte[] weights, float[] x, int rows)
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
            var matrix = pw;
            if (kernel.RepacksWeights)
            {
                Assert.True(kernel.TryPrepareWeights(pw, rowBytes, rows, n, packed.Pointer));
                matrix = packed.Pointer;
            }
            var step = 2 * kernel.RowTile;
            for (var start = 0; start < rows; start += step)
                kernel.MatVec(matrix + (long)start * rowBytes, rowBytes, Math.Min(step, rows - start), state.Pointer, n, py + start);
        }
        return y;
    }

    private static byte[] Quantize(GgmlType type, float[][] rows)
    {
        var rowBytes = (int)QuantTypes.Get(type).RowBytes(rows[0].Length);
        var bytes = new byte[rowBytes * rows.Length];
        for (var r = 0; r < rows.Length; r++)
            QuantReference.Quantize(type, rows[r], bytes.AsSpan(r * rowBytes, rowBytes));
        return bytes;
    }

    private static float[][] RandomRows(Random rng, int rows, int n)
    {
        var result = new float[rows][];
        for (var r = 0; r < rows; r++)
        {
            result[r] = new float[n];
            for (var i = 0; i < n; i++)
                result[r][i] = (float)(rng.NextDouble() - 0.5) * (1 + r % 5);
        }
        return result;
    }

    /// <summary>Random GGUF bytes with finite f16 scales: every code, every 4-bit Q2_K scale and min.</summary>
    private static byte[] RawWeights(GgmlType type, Random rng, int rows, int n)
    {
        var info = QuantTypes.Get(type);
        var bytes = new byte[info.RowBytes(n) * rows];
        rng.NextBytes(bytes);
        int[] halves = type switch { GgmlType.Q4_0 => [0], GgmlType.Q4_1 => [0, 2], _ => [80, 82] };
        for (var b = 0; b < bytes.Length / info.BlockBytes; b++)
            foreach (var offset in halves)
                MemoryMarshal.Write(bytes.AsSpan(b * (int)info.BlockBytes + offset), (Half)((rng.NextDouble() - 0.5) * 0.1));
        return bytes;
    }

    private static float[] Gaussian(Random rng, int n, double scale = 1)
    {
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return x;
    }

    public static TheoryData<GgmlType, int, int> Shapes()
    {
        var data = new TheoryData<GgmlType, int, int>();
        foreach (var type in LutTypes)
        {
            var block = type == GgmlType.Q2_K ? 256 : 32;
            data.Add(type, block, 1);
            data.Add(type, 3 * block, 7);
            data.Add(type, 5 * block, 2 * BitSerialLutMatVec.TileRows(type) + 45);
            data.Add(type, 14336, 3 * BitSerialLutMatVec.TileRows(type) + 33);
        }
        return data;
    }

    /// <summary>Every SIMD variant equals the scalar form bit for bit (quantized and raw weights, ±large activations).</summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void Variants_equal_the_scalar_form_exactly(GgmlType type, int n, int rows)
    {
        var rng = new Random(n + rows);
        var cases = new List<(byte[] Weights, float[] X)>
        {
            (Quantize(type, RandomRows(rng, rows, n)), Gaussian(rng, n, 3)),
            (RawWeights(type, rng, rows, n), Gaussian(rng, n, 1e4)),
            (RawWeights(type, rng, rows, n), Enumerable.Range(0, n).Select(i => i % 3 == 0 ? -3e4f : 3e4f).ToArray()),
        };
        var scalar = new BitSerialLutScalar(type);
        foreach (var (weights, x) in cases)
        {
            var expected = Run(scalar, weights, x, rows);
            foreach (var kernel in Variants(type))
            {
                var y = Run(kernel, weights, x, rows);
                for (var r = 0; r < rows; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[r]) == BitConverter.SingleToInt32Bits(y[r]),
                        $"{kernel} n={n} row {r}/{rows}: scalar {expected[r]}, kernel {y[r]}");
            }
        }
    }

    /// <summary>
    /// The tables are exact sums of llama.cpp's quantized activations (Q8_0, Q8_1, Q8_K), so each row equals
    /// llama.cpp's reference dot product up to f32 rounding (1e-5 of Σ|w·a|), in every variant: this checks the
    /// layout and the bit-plane algebra against the reference kernels rather than against this code.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Rows_equal_the_llama_cpp_dot_product(GgmlType type)
    {
        var rng = new Random(29);
        var n = type == GgmlType.Q2_K ? 1280 : 224;
        var rows = BitSerialLutMatVec.TileRows(type) + 45;
        var weights = RawWeights(type, rng, rows, n);
        var rowBytes = weights.Length / rows;
        var activationType = QuantReference.ActivationType(type);
        foreach (var x in new[] { Gaussian(rng, n), Gaussian(rng, n, 300) })
        {
            var activations = new byte[QuantReference.ActivationRowBytes(activationType, n)];
            QuantReference.QuantizeActivations(activationType, x, activations);
            var a = new float[n];
            QuantReference.Dequantize(activationType, activations, a);
            var w = new float[n];
            foreach (var kernel in Variants(type).Append<MatVecKernel>(new BitSerialLutScalar(type)))
            {
                var y = Run(kernel, weights, x, rows);
                for (var r = 0; r < rows; r++)
                {
                    var row = weights.AsSpan(r * rowBytes, rowBytes);
                    var expected = QuantReference.Dot(type, row, activations, n);
                    QuantReference.Dequantize(type, row, w);
                    var magnitude = 0.0;
                    for (var i = 0; i < n; i++)
                        magnitude += Math.Abs((double)w[i] * a[i]);
                    Assert.True(Math.Abs(expected - y[r]) <= 1e-5 * magnitude,
                        $"{kernel} row {r}: reference {expected}, kernel {y[r]}, Σ|w·a| {magnitude}");
                }
            }
        }
    }

    private static double Nmse(float[] y, double[] truth)
    {
        double error = 0, power = 0;
        for (var r = 0; r < y.Length; r++)
        {
            error += (y[r] - truth[r]) * (y[r] - truth[r]);
            power += truth[r] * truth[r];
        }
        return error / power;
    }

    /// <summary>
    /// T-MAC's acceptance bound: NMSE = mean((y − y*)²)/mean(y*²) ≤ 5e-4 against y* = dequantized weights · x in double,
    /// for Gaussian activations and for activations with a few large outlier channels. The multiply-add kernel
    /// (llama.cpp's Q8_0/Q8_1/Q8_K activations) is measured on the same data and printed next to it.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Error_stays_within_the_T_MAC_bound(GgmlType type)
    {
        var rng = new Random(23);
        const int n = 4096, rows = 256;
        var weights = Quantize(type, RandomRows(rng, rows, n));
        var rowBytes = weights.Length / rows;
        var dequantized = new float[rows][];
        for (var r = 0; r < rows; r++)
        {
            dequantized[r] = new float[n];
            QuantReference.Dequantize(type, weights.AsSpan(r * rowBytes, rowBytes), dequantized[r]);
        }
        var gaussian = Gaussian(rng, n);
        var outliers = Gaussian(rng, n);
        foreach (var channel in new[] { 17, 1000, 2222, 4000 })
            outliers[channel] = 40 * (channel % 2 == 0 ? 1 : -1);
        var mad = KernelTable.Get(type, KernelIsa.Selected);
        foreach (var (name, x) in new[] { ("gaussian", gaussian), ("outliers", outliers) })
        {
            var truth = new double[rows];
            for (var r = 0; r < rows; r++)
                for (var i = 0; i < n; i++)
                    truth[r] += (double)dequantized[r][i] * x[i];
            var lut = Nmse(Run(new BitSerialLutScalar(type), weights, x, rows), truth);
            var reference = Nmse(Run(mad, weights, x, rows), truth);
            TestContext.Current.TestOutputHelper?.WriteLine($"{type} {name}: NMSE LUT {lut:E2}, multiply-add ({mad.Name}) {reference:E2}, ratio {lut / reference:F2}");
            // The LUT is exact over llama.cpp's activations, so its error is theirs (1.00x up to f32 rounding); Q8_K's
            // exceeds T-MAC's bound when an outlier sets the scale of a whole 256-value block.
            var bound = Math.Max(5e-4, 1.01 * reference);
            Assert.True(lut <= bound, $"{type} {name}: NMSE {lut:E2} (multiply-add {reference:E2})");
        }
    }

    [Fact]
    public void Weights_the_layout_cannot_hold_are_refused()
    {
        var rng = new Random(3);
        foreach (var type in LutTypes)
        {
            var n = type == GgmlType.Q2_K ? 256 : 64;
            var kernel = new BitSerialLutScalar(type);
            var weights = RawWeights(type, rng, 40, n);
            var rowBytes = weights.Length / 40;
            var scaleOffset = type == GgmlType.Q2_K ? 82 : 0;
            MemoryMarshal.Write(weights.AsSpan(30 * rowBytes + scaleOffset), Half.NaN);
            using var packed = new Native(weights.Length);
            fixed (byte* pw = weights)
            {
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, 40, n, packed.Pointer));
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes - 1, 40, n, packed.Pointer));
                MemoryMarshal.Write(weights.AsSpan(30 * rowBytes + scaleOffset), Half.PositiveInfinity);
                Assert.False(kernel.TryPrepareWeights(pw, rowBytes, 40, n, packed.Pointer));
            }
        }
        Assert.Throws<ArgumentException>(() => new BitSerialLutScalar(GgmlType.Q4_K));
    }

    [Fact]
    public void The_table_offers_the_LUT_kernel_where_it_runs()
    {
        foreach (var isa in KernelIsa.Supported)
        {
            foreach (var type in LutTypes)
            {
                var offered = KernelTable.RepackingKernels(type, isa).OfType<BitSerialLutMatVec>().ToArray();
                var expected = Environment.GetEnvironmentVariable(KernelTable.RepackVariable) != "0"
                    && (isa == InstructionSet.Vector128 || (isa == InstructionSet.Avx2 && BitSerialLutAvx2.IsSupported)
                        || (isa == InstructionSet.Avx512 && BitSerialLutAvx512.IsSupported));
                Assert.Equal(expected ? 1 : 0, offered.Length);
                foreach (var lut in offered)
                {
                    Assert.Equal(type, lut.WeightType);
                    Assert.Equal(isa, lut.Isa);
                    Assert.True(lut.RepacksWeights);
                    Assert.True(lut.UsesLookupTables);
                }
            }
        }
    }
}
