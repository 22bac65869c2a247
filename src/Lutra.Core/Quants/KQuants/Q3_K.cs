using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q3_K (110 B / 256 elements): 16 sub-blocks of 16 with signed 6-bit scales (stored +32 in 12 bytes);
/// q ∈ [−4, 3] = low two bits (Q2_K placement) minus 4 unless the element's bit (e/32) of <c>HMask[e % 32]</c>
/// is set; value = d·sc·q.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ3_K
{
    public const int Size = 256;
    public fixed byte HMask[Size / 8];
    public fixed byte Qs[Size / 4];
    public fixed byte Scales[12];
    public Half D;
}

public static unsafe class Q3_KReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    internal static int Quant(in BlockQ3_K b, int e)
    {
        var low = (b.Qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
        var high = (b.HMask[e % 32] >> (e / 32)) & 1;
        return low - (high != 0 ? 0 : 4);
    }

    /// <summary>Signed scale of sub-block s ∈ [0, 16): low 4 bits from a nibble, top 2 bits from bytes 8..11.</summary>
    internal static int Scale(in BlockQ3_K b, int s)
    {
        var lo4 = s < 8 ? b.Scales[s] & 0xF : b.Scales[s - 8] >> 4;
        var hi2 = (b.Scales[8 + s % 4] >> (2 * (s / 4))) & 3;
        return (lo4 | (hi2 << 4)) - 32;
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ3_K>(src);
        for (var i = 0; i < dst.Length / BlockQ3_K.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockQ3_K.Size, BlockQ3_K.Size);
            for (var s = 0; s < 16; s++)
            {
                var dl = d * Scale(b, s);
                for (var e = 16 * s; e < 16 * s + 16; e++)
                    y[e] = dl * Quant(b, e);
            }
        }
    }

    /// <summary>
    /// quantize_row_q3_K_ref: make_q3_quants per sub-block, 6-bit scales relative to the signed largest scale
    /// (d = 1/iscale may be negative), then requantization with the stored d and scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ3_K>(dst);
        Span<sbyte> l = stackalloc sbyte[BlockQ3_K.Size];
        Span<float> scales = stackalloc float[16];
        for (var i = 0; i < src.Length / BlockQ3_K.Size; i++)
        {
            var x = src.Slice(i * BlockQ3_K.Size, BlockQ3_K.Size);
            ref var b = ref blocks[i];
            float maxScale = 0, amax = 0;
            for (var j = 0; j < 16; j++)
            {
                scales[j] = KQuantSearch.MakeQ3Quants(16, 4, x.Slice(16 * j, 16), l.Slice(16 * j, 16));
                var scale = MathF.Abs(scales[j]);
                if (scale > amax)
                {
                    amax = scale;
                    maxScale = scales[j];
                }
            }

            for (var j = 0; j < 12; j++)
                b.Scales[j] = 0;
            if (maxScale != 0)
            {
                var iscale = -32f / maxScale;
                for (var j = 0; j < 16; j++)
                {
                    // C stores nearest_int's result in an int8_t before clamping.
                    var ls = Math.Clamp((int)(sbyte)NearestInt(iscale * scales[j]), -32, 31) + 32;
                    if (j < 8)
                        b.Scales[j] = (byte)(ls & 0xF);
                    else
                        b.Scales[j - 8] |= (byte)((ls & 0xF) << 4);
                    b.Scales[j % 4 + 8] |= (byte)((ls >> 4) << (2 * (j / 4)));
                }
                b.D = ToHalf(1 / iscale);
            }
            else
            {
                b.D = ToHalf(0f);
            }

            for (var j = 0; j < 16; j++)
            {
                var d = ToFloat(b.D) * Scale(b, j);
                if (d == 0)
                    continue;
                for (var k = 0; k < 16; k++)
                    l[16 * j + k] = (sbyte)(Math.Clamp(NearestInt(x[16 * j + k] / d), -4, 3) + 4);
            }

            for (var m = 0; m < 32; m++)
                b.HMask[m] = 0;
            for (var e = 0; e < BlockQ3_K.Size; e++)
            {
                if (l[e] > 3)
                {
                    b.HMask[e % 32] |= (byte)(1 << (e / 32));
                    l[e] -= 4;
                }
            }
            for (var h = 0; h < 2; h++)
                for (var m = 0; m < 32; m++)
                {
                    var e = 128 * h + m;
                    b.Qs[32 * h + m] = (byte)((byte)l[e] | ((byte)l[e + 32] << 2) | ((byte)l[e + 64] << 4) | ((byte)l[e + 96] << 6));
                }
        }
    }

    /// <summary>Per super-block (d_w·d_a)·Σ_s sc_s·Σ q·a (the −4 offset is inside q; no min term).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ3_K>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ3_K.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            var sumi = 0;
            for (var s = 0; s < 16; s++)
            {
                var dot = 0;
                for (var e = 16 * s; e < 16 * s + 16; e++)
                    dot += Quant(wb, e) * ab.Qs[e];
                sumi += Scale(wb, s) * dot;
            }
            sum += ToFloat(wb.D) * ab.D * sumi;
        }
        return sum;
    }
}
