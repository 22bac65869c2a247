using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>Q4_0 (18 B / 32 elements): value = (q − 8)·d; low nibbles hold elements 0..15, high nibbles 16..31.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_0
{
    public const int Size = 32;
    public Half D;
    public fixed byte Qs[Size / 2];
}

public static unsafe class Q4_0Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_0, Dot);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4_0>(src);
        for (var i = 0; i < dst.Length / BlockQ4_0.Size; i++)
        {
            var b = blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockQ4_0.Size, BlockQ4_0.Size);
            for (var j = 0; j < 16; j++)
            {
                y[j] = ((b.Qs[j] & 0x0F) - 8) * d;
                y[j + 16] = ((b.Qs[j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>quantize_row_q4_0_ref: d = max/−8 with max the signed largest-magnitude element; q = min(15, trunc(x/d + 8.5)).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4_0>(dst);
        for (var i = 0; i < src.Length / BlockQ4_0.Size; i++)
        {
            var x = src.Slice(i * BlockQ4_0.Size, BlockQ4_0.Size);
            ref var b = ref blocks[i];
            var max = SignedAbsMax(x, out _);
            var d = max / -8;
            var id = d != 0 ? 1.0f / d : 0.0f;   // from the f32 d, not the f16-rounded one
            b.D = ToHalf(d);
            for (var j = 0; j < 16; j++)
            {
                // x·id + 8.5 lies in [0.5, 16.5], so C's truncating (int8_t) cast is a floor here.
                var q0 = Math.Min(15, (int)(x[j] * id + 8.5f));
                var q1 = Math.Min(15, (int)(x[j + 16] * id + 8.5f));
                b.Qs[j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Σ_blocks (Σ (q−8)·a) · d_w · d_a, evaluated as ggml does: (sumi · d_w) · d_a.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ4_0>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_0>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ4_0.Size; i++)
        {
            var wb = w[i];
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < 16; j++)
            {
                sumi += ((wb.Qs[j] & 0x0F) - 8) * (sbyte)ab.Qs[j];
                sumi += ((wb.Qs[j] >> 4) - 8) * (sbyte)ab.Qs[j + 16];
            }
            sum += sumi * ToFloat(wb.D) * ToFloat(ab.D);
        }
        return sum;
    }
}
