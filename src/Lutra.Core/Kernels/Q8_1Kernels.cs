using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Lutra.Core.Kernels;

/// <summary>Q8_1 activation quantization (the activation format of Q4_1 and Q5_1), portable Vector128.</summary>
public static unsafe class Q8_1Kernels
{
    public const int BlockSize = 32;
    public const int BlockBytes = 36;

    /// <summary>
    /// As llama.cpp's x86 build: d = amax/127 stored as f16, q = round-half-even(x · (127/amax)), s = f16(d · Σq).
    /// Bit-identical to the scalar reference.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowVector128(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / BlockSize; b++, x += BlockSize, dst += BlockBytes)
        {
            var amaxV = Vector128<float>.Zero;
            for (var i = 0; i < BlockSize; i += 4)
                amaxV = Vector128.Max(amaxV, Vector128.Abs(Vector128.Load(x + i)));
            var amax = MathF.Max(MathF.Max(amaxV[0], amaxV[1]), MathF.Max(amaxV[2], amaxV[3]));
            var d = amax / 127f;
            var id = Vector128.Create(amax != 0 ? 127f / amax : 0f);
            var sum = Vector128<int>.Zero;
            var q = (sbyte*)(dst + 4);
            for (var i = 0; i < BlockSize; i += 16)
            {
                // Round first (half-to-even), then convert: the conversion of an integral value is exact.
                var i0 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i) * id));
                var i1 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 4) * id));
                var i2 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 8) * id));
                var i3 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 12) * id));
                sum += i0 + i1 + i2 + i3;
                Vector128.Narrow(Vector128.Narrow(i0, i1), Vector128.Narrow(i2, i3)).Store(q + i);
            }
            *(Half*)dst = (Half)d;
            *(Half*)(dst + 2) = (Half)(d * Vector128.Sum(sum));
        }
    }
}
