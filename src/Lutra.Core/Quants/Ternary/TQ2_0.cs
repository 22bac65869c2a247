using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// TQ2_0 (66 B / 256 elements): ternary values (t − 1)·d with t in 2-bit fields; for half h, byte m, field n:
/// t = (Qs[32h + m] &gt;&gt; 2n) &amp; 3 is element 128h + 32n + m. The scale comes last.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockTQ2_0
{
    public const int Size = 256;
    public fixed byte Qs[Size / 4];
    public Half D;
}

public static unsafe class TQ2_0Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    private static int Field(in BlockTQ2_0 b, int e) => (b.Qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockTQ2_0>(src);
        for (var i = 0; i < dst.Length / BlockTQ2_0.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockTQ2_0.Size, BlockTQ2_0.Size);
            for (var e = 0; e < BlockTQ2_0.Size; e++)
                y[e] = (Field(b, e) - 1) * d;
        }
    }

    /// <summary>quantize_row_tq2_0_ref: d = amax, t = lroundf(x/d) + 1.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockTQ2_0>(dst);
        for (var i = 0; i < src.Length / BlockTQ2_0.Size; i++)
        {
            var x = src.Slice(i * BlockTQ2_0.Size, BlockTQ2_0.Size);
            ref var b = ref blocks[i];
            var d = AbsMax(x);
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            for (var h = 0; h < 2; h++)
            {
                for (var m = 0; m < 32; m++)
                {
                    var q = 0;
                    for (var n = 0; n < 4; n++)
                        q |= ((RoundAway(x[128 * h + 32 * n + m] * id) + 1) & 3) << (2 * n);
                    b.Qs[32 * h + m] = (byte)q;
                }
            }
        }
    }

    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockTQ2_0>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockTQ2_0.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            var sumi = 0;
            for (var e = 0; e < BlockTQ2_0.Size; e++)
                sumi += (Field(wb, e) - 1) * ab.Qs[e];
            sum += sumi * (ToFloat(wb.D) * ab.D);
        }
        return sum;
    }
}
