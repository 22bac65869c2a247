using System.Runtime.InteropServices;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests.Quants;

/// <summary>Each reference Dot equals the exact dot of the dequantized operands (computed in double).</summary>
public sealed class DotTests
{
    public static readonly TheoryData<GgmlType> WeightTypes = new(
        GgmlType.F32, GgmlType.F16, GgmlType.BF16,
        GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q8_1,
        GgmlType.Q8_K, GgmlType.TQ1_0, GgmlType.TQ2_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
        GgmlType.IQ4_NL, GgmlType.IQ4_XS);

    private static float[] Gaussian(Random rng, int n, float scale)
    {
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble())) * scale;
        return x;
    }

    /// <summary>
    /// Q4_1/Q5_1 · Q8_1 takes the min term as m_w · s_a with the block's stored s = f16(d_a·Σq), not the exact
    /// d_a·Σq that dequantizing both rows implies; this is the difference, m_w · (s − d_a·Σq) per block.
    /// </summary>
    private static unsafe double StoredSumCorrection(GgmlType type, byte[] weights, byte[] acts, int n)
    {
        var blockBytes = QuantTypes.Get(type).BlockBytes;
        var a = MemoryMarshal.Cast<byte, BlockQ8_1>(acts);
        double correction = 0;
        for (var b = 0; b < n / 32; b++)
        {
            var m = (double)BitConverter.ToHalf(weights, b * blockBytes + 2); // Q4_1 and Q5_1 both store m at offset 2
            var sum = 0;
            for (var j = 0; j < 32; j++)
                sum += a[b].Qs[j];
            correction += m * ((double)a[b].S - (double)(float)a[b].D * sum);
        }
        return correction;
    }

    [Theory]
    [MemberData(nameof(WeightTypes))]
    public void Dot_matches_the_dot_of_the_dequantized_rows(GgmlType type)
    {
        const int n = 1024;
        var rng = new Random(1234 + (int)type);
        var info = QuantTypes.Get(type);
        var actType = QuantReference.ActivationType(type);

        for (var trial = 0; trial < 8; trial++)
        {
            var weights = new byte[info.RowBytes(n)];
            QuantReference.Quantize(type, Gaussian(rng, n, 0.05f), weights);
            var acts = new byte[QuantReference.ActivationRowBytes(actType, n)];
            var x = Gaussian(rng, n, 2f);
            if (trial == 0)
                x.AsSpan(0, 256).Clear(); // an all-zero activation block
            QuantReference.QuantizeActivations(actType, x, acts);

            var w = new float[n];
            var a = new float[n];
            QuantReference.Dequantize(type, weights, w);
            QuantReference.Dequantize(actType, acts, a);
            double exact = 0, magnitude = 0;
            for (var i = 0; i < n; i++)
            {
                exact += (double)w[i] * a[i];
                magnitude += Math.Abs((double)w[i] * a[i]);
            }

            if (actType == GgmlType.Q8_1 && type != GgmlType.Q8_1)
                exact += StoredSumCorrection(type, weights, acts, n);

            var dot = QuantReference.Dot(type, weights, acts, n);
            Assert.True(Math.Abs(dot - (float)exact) <= 1e-5 * magnitude,
                $"trial {trial}: Dot = {dot}, exact = {exact}, Σ|w·a| = {magnitude}");

            var dotF32 = QuantReference.DotF32(type, weights, x, n);
            double exactF32 = 0, magnitudeF32 = 0;
            for (var i = 0; i < n; i++)
            {
                exactF32 += (double)w[i] * x[i];
                magnitudeF32 += Math.Abs((double)w[i] * x[i]);
            }
            Assert.True(Math.Abs(dotF32 - exactF32) <= 1e-6 * magnitudeF32,
                $"trial {trial}: DotF32 = {dotF32}, exact = {exactF32}");
        }
    }
}
