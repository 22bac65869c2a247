using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>Q5_1 (24 B / 32 elements): value = q·d + m with q five bits, reconstructed as in Q5_0.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_1
{
    public const int Size = 32;
    public Half D;
    public Half M;
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

public static unsafe class Q5_1Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_1, Dot);

    internal static void Unpack(in BlockQ5_1 b, Span<int> q)
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
        var blocks = MemoryMarshal.Cast<byte, BlockQ5_1>(src);
        Span<int> q = stackalloc int[BlockQ5_1.Size];
        for (var i = 0; i < dst.Length / BlockQ5_1.Size; i++)
        {
            Unpack(blocks[i], q);
            var d = ToFloat(blocks[i].D);
            var m = ToFloat(blocks[i].M);
            var y = dst.Slice(i * BlockQ5_1.Size, BlockQ5_1.Size);
            for (var j = 0; j < BlockQ5_1.Size; j++)
                y[j] = q[j] * d + m;
        }
    }

    /// <summary>quantize_row_q5_1_ref: d = (max − min)/31, q = trunc((x − min)/d + 0.5) with no clamp (as in ggml).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5_1>(dst);
        for (var i = 0; i < src.Length / BlockQ5_1.Size; i++)
        {
            var x = src.Slice(i * BlockQ5_1.Size, BlockQ5_1.Size);
            ref var b = ref blocks[i];
            var min = float.MaxValue;
            var max = -float.MaxValue;
            foreach (var v in x)
            {
                if (v < min) min = v;
                if (v > max) max = v;
            }
            var d = (max - min) / 31;
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            b.M = ToHalf(min);
            uint qh = 0;
            for (var j = 0; j < 16; j++)
            {
                var q0 = (byte)(int)((x[j] - min) * id + 0.5f);
                var q1 = (byte)(int)((x[j + 16] - min) * id + 0.5f);
                b.Qs[j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 >> 4) & 1) << j;
                qh |= (uint)((q1 >> 4) & 1) << (j + 16);
            }
            b.HighBits = qh;
        }
    }

    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ5_1>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_1>(activations);
        Span<int> q = stackalloc int[BlockQ5_1.Size];
        var sum = 0f;
        for (var i = 0; i < n / BlockQ5_1.Size; i++)
        {
            Unpack(w[i], q);
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < BlockQ5_1.Size; j++)
                sumi += q[j] * (sbyte)ab.Qs[j];
            sum += ToFloat(w[i].D) * ToFloat(ab.D) * sumi + ToFloat(w[i].M) * ToFloat(ab.S);
        }
        return sum;
    }
}
