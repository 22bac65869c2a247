using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q5_0 (22 B / 32 elements): value = (q − 16)·d with q = 4 low bits from a nibble (Q4_0 placement) plus
/// bit i of the little-endian u32 <c>qh</c> as bit 4 of element i.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_0
{
    public const int Size = 32;
    public Half D;
    public fixed byte Qh[4];
    public fixed byte Qs[Size / 2];

    /// <summary>The fifth bits as the little-endian u32 ggml reads with memcpy.</summary>
    public uint HighBits
    {
        readonly get => (uint)(Qh[0] | (Qh[1] << 8) | (Qh[2] << 16) | (Qh[3] << 24));
        set
        {
            Qh[0] = (byte)value;
            Qh[1] = (byte)(value >> 8);
            Qh[2] = (byte)(value >> 16);
            Qh[3] = (byte)(value >> 24);
        }
    }
}

public static unsafe class Q5_0Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_0, Dot);

    /// <summary>The 32 five-bit values of one block (0..31), in element order.</summary>
    internal static void Unpack(in BlockQ5_0 b, Span<int> q)
    {
        var qh = b.HighBits;
        for (var j = 0; j < 16; j++)
        {
            q[j] = (b.Qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            q[j + 16] = (b.Qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        }
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5_0>(src);
        Span<int> q = stackalloc int[BlockQ5_0.Size];
        for (var i = 0; i < dst.Length / BlockQ5_0.Size; i++)
        {
            Unpack(blocks[i], q);
            var d = ToFloat(blocks[i].D);
            var y = dst.Slice(i * BlockQ5_0.Size, BlockQ5_0.Size);
            for (var j = 0; j < BlockQ5_0.Size; j++)
                y[j] = (q[j] - 16) * d;
        }
    }

    /// <summary>quantize_row_q5_0_ref: d = max/−16 (signed max), q = min(31, trunc(x/d + 16.5)).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5_0>(dst);
        for (var i = 0; i < src.Length / BlockQ5_0.Size; i++)
        {
            var x = src.Slice(i * BlockQ5_0.Size, BlockQ5_0.Size);
            ref var b = ref blocks[i];
            var max = SignedAbsMax(x, out _);
            var d = max / -16;
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            uint qh = 0;
            for (var j = 0; j < 16; j++)
            {
                var q0 = Math.Min(31, (int)(x[j] * id + 16.5f));
                var q1 = Math.Min(31, (int)(x[j + 16] * id + 16.5f));
                b.Qs[j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 >> 4) & 1) << j;
                qh |= (uint)((q1 >> 4) & 1) << (j + 16);
            }
            b.HighBits = qh;
        }
    }

    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ5_0>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_0>(activations);
        Span<int> q = stackalloc int[BlockQ5_0.Size];
        var sum = 0f;
        for (var i = 0; i < n / BlockQ5_0.Size; i++)
        {
            Unpack(w[i], q);
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < BlockQ5_0.Size; j++)
                sumi += (q[j] - 16) * (sbyte)ab.Qs[j];
            sum += sumi * ToFloat(w[i].D) * ToFloat(ab.D);
        }
        return sum;
    }
}
