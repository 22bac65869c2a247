using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q8_K (292 B / 256 elements): value = d·q with an <b>f32</b> d; <c>Bsums[k]</c> = Σ of q over elements
/// 16k..16k+15, which the K-quant dot products use for their min terms. Activation format only.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_K
{
    public const int Size = 256;
    public float D;
    public fixed sbyte Qs[Size];
    public fixed short Bsums[Size / 16];
}

public static unsafe class Q8_KReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot, Quantize);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_K>(src);
        for (var i = 0; i < dst.Length / BlockQ8_K.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            var y = dst.Slice(i * BlockQ8_K.Size, BlockQ8_K.Size);
            for (var j = 0; j < BlockQ8_K.Size; j++)
                y[j] = b.D * b.Qs[j];
        }
    }

    /// <summary>
    /// quantize_row_q8_K_ref, which is also what the x86 build uses for activations: iscale = −127/max with max
    /// the signed largest-magnitude element, q = min(127, nearest_int(iscale·x)) (half to even), d = 1/iscale in f32.
    /// An all-zero block gets d = 0, q = 0 and (here) zero bsums — ggml leaves its bsums unwritten.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_K>(dst);
        for (var i = 0; i < src.Length / BlockQ8_K.Size; i++)
        {
            var x = src.Slice(i * BlockQ8_K.Size, BlockQ8_K.Size);
            ref var b = ref blocks[i];
            var max = SignedAbsMax(x, out var amax);
            if (amax == 0)
            {
                b = default;
                continue;
            }
            var iscale = -127f / max;
            for (var j = 0; j < BlockQ8_K.Size; j++)
                b.Qs[j] = (sbyte)Math.Min(127, NearestInt(iscale * x[j]));
            for (var k = 0; k < BlockQ8_K.Size / 16; k++)
            {
                var sum = 0;
                for (var j = 0; j < 16; j++)
                    sum += b.Qs[16 * k + j];
                b.Bsums[k] = (short)sum;
            }
            b.D = 1 / iscale;
        }
    }

    /// <summary>Q8_K · Q8_K (ggml has no kernel for it; defined for completeness): Σ sumi · (d_w · d_a).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ8_K>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ8_K.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            var sumi = 0;
            for (var j = 0; j < BlockQ8_K.Size; j++)
                sumi += wb.Qs[j] * ab.Qs[j];
            sum += sumi * (wb.D * ab.D);
        }
        return sum;
    }
}
