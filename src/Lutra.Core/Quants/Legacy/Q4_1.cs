using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>Q4_1 (20 B / 32 elements): value = q·d + m; nibble placement as Q4_0.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_1
{
    public const int Size = 32;
    public Half D;
    public Half M;
    public fixed byte Qs[Size / 2];
}

public static unsafe class Q4_1Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_1, Dot);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4_1>(src);
        for (var i = 0; i < dst.Length / BlockQ4_1.Size; i++)
        {
            var b = blocks[i];
            var d = ToFloat(b.D);
            var m = ToFloat(b.M);
            var y = dst.Slice(i * BlockQ4_1.Size, BlockQ4_1.Size);
            for (var j = 0; j < 16; j++)
            {
                // One multiply then one add: a fused multiply-add would change the last bit.
                y[j] = (b.Qs[j] & 0x0F) * d + m;
                y[j + 16] = (b.Qs[j] >> 4) * d + m;
            }
        }
    }

    /// <summary>quantize_row_q4_1_ref: d = (max − min)/15, m = min, q = min(15, trunc((x − min)/d + 0.5)).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4_1>(dst);
        for (var i = 0; i < src.Length / BlockQ4_1.Size; i++)
        {
            var x = src.Slice(i * BlockQ4_1.Size, BlockQ4_1.Size);
            ref var b = ref blocks[i];
            var min = float.MaxValue;
            var max = -float.MaxValue;
            foreach (var v in x)
            {
                if (v < min) min = v;
                if (v > max) max = v;
            }
            var d = (max - min) / 15;
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            b.M = ToHalf(min);
            for (var j = 0; j < 16; j++)
            {
                var q0 = Math.Min(15, (int)((x[j] - min) * id + 0.5f));
                var q1 = Math.Min(15, (int)((x[j + 16] - min) * id + 0.5f));
                b.Qs[j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Σ_blocks (d_w·d_a)·Σ q·a + m_w·s_a, where s_a = d_a·Σa carries the activation block's sum.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ4_1>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_1>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ4_1.Size; i++)
        {
            var wb = w[i];
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < 16; j++)
            {
                sumi += (wb.Qs[j] & 0x0F) * (sbyte)ab.Qs[j];
                sumi += (wb.Qs[j] >> 4) * (sbyte)ab.Qs[j + 16];
            }
            sum += ToFloat(wb.D) * ToFloat(ab.D) * sumi + ToFloat(wb.M) * ToFloat(ab.S);
        }
        return sum;
    }
}
