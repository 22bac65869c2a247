using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q6_K (210 B / 256 elements): 16 sub-blocks of 16 with signed int8 scales; q = (4 low bits | 2 high bits &lt;&lt; 4) − 32.
/// For half h and l &lt; 32: elements 128h + l and 128h + 64 + l share <c>Ql[64h + l]</c> (low/high nibble),
/// 128h + 32 + l and 128h + 96 + l share <c>Ql[64h + 32 + l]</c>; <c>Qh[32h + l]</c> holds the four high pairs.
/// Value = (d·sc)·q.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ6_K
{
    public const int Size = 256;
    public fixed byte Ql[Size / 2];
    public fixed byte Qh[Size / 4];
    public fixed sbyte Scales[Size / 16];
    public Half D;
}

public static unsafe class Q6_KReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    internal static int Quant(in BlockQ6_K b, int e)
    {
        var h = e / 128;
        var r = e % 128;       // 0..127 within the half
        var quarter = r / 32;  // which of the four 32-runs
        var l = r % 32;
        var ql = b.Ql[64 * h + 32 * (quarter & 1) + l];
        var low = quarter < 2 ? ql & 0xF : ql >> 4;
        var high = (b.Qh[32 * h + l] >> (2 * quarter)) & 3;
        return (low | (high << 4)) - 32;
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ6_K>(src);
        for (var i = 0; i < dst.Length / BlockQ6_K.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockQ6_K.Size, BlockQ6_K.Size);
            for (var s = 0; s < 16; s++)
            {
                var dl = d * b.Scales[s];
                for (var e = 16 * s; e < 16 * s + 16; e++)
                    y[e] = dl * Quant(b, e);
            }
        }
    }

    /// <summary>
    /// quantize_row_q6_K_ref: make_qx_quants (nmax 32, weights x²) per sub-block, int8 scales relative to the
    /// signed largest scale (iscale = −128/max), requantization with the stored d and scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ6_K>(dst);
        Span<sbyte> l = stackalloc sbyte[BlockQ6_K.Size];
        Span<float> scales = stackalloc float[16];
        for (var i = 0; i < src.Length / BlockQ6_K.Size; i++)
        {
            var x = src.Slice(i * BlockQ6_K.Size, BlockQ6_K.Size);
            ref var b = ref blocks[i];
            float maxScale = 0, maxAbsScale = 0;
            for (var s = 0; s < 16; s++)
            {
                scales[s] = KQuantSearch.MakeQxQuants(16, 32, x.Slice(16 * s, 16), l.Slice(16 * s, 16));
                var absScale = MathF.Abs(scales[s]);
                if (absScale > maxAbsScale)
                {
                    maxAbsScale = absScale;
                    maxScale = scales[s];
                }
            }

            if (maxAbsScale < KQuantSearch.GroupMaxEps)
            {
                b = default;
                continue;
            }

            var iscale = -128f / maxScale;
            b.D = ToHalf(1 / iscale);
            for (var s = 0; s < 16; s++)
                b.Scales[s] = (sbyte)Math.Min(127, NearestInt(iscale * scales[s]));

            for (var s = 0; s < 16; s++)
            {
                var d = ToFloat(b.D) * b.Scales[s];
                if (d == 0)
                    continue;
                for (var k = 0; k < 16; k++)
                    l[16 * s + k] = (sbyte)(Math.Clamp(NearestInt(x[16 * s + k] / d), -32, 31) + 32);
            }

            for (var h = 0; h < 2; h++)
                for (var k = 0; k < 32; k++)
                {
                    var e = 128 * h + k;
                    int q1 = l[e], q2 = l[e + 32], q3 = l[e + 64], q4 = l[e + 96];
                    b.Ql[64 * h + k] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                    b.Ql[64 * h + 32 + k] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                    b.Qh[32 * h + k] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
                }
        }
    }

    /// <summary>Per super-block (d_w·d_a)·Σ_s sc_s·Σ q·a (the −32 offset is inside q; no min term).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ6_K>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ6_K.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            var sumi = 0;
            for (var s = 0; s < 16; s++)
            {
                var dot = 0;
                for (var e = 16 * s; e < 16 * s + 16; e++)
                    dot += Quant(wb, e) * ab.Qs[e];
                sumi += wb.Scales[s] * dot;
            }
            sum += ToFloat(wb.D) * ab.D * sumi;
        }
        return sum;
    }
}
