using System.Runtime.Intrinsics;
using Lutra.Core.Kernels;

namespace Lutra.Core.Tests;

public class FloatKernelsTests
{
    [Fact]
    public void Half_widening_is_exact_for_all_65536_bit_patterns()
    {
        if (!KernelIsa.IsSupported(InstructionSet.Avx512))
            Assert.Skip("this CPU has no AVX-512; the 512-bit half conversion cannot run here");
        var lanes = new ushort[16];
        for (var start = 0; start < 65536; start += 16)
        {
            for (var i = 0; i < 16; i++)
                lanes[i] = (ushort)(start + i);
            var wide = FloatKernels.HalfToSingle(Vector256.Create(lanes));
            for (var i = 0; i < 16; i++)
            {
                var expected = (float)BitConverter.UInt16BitsToHalf(lanes[i]);
                if (float.IsNaN(expected))
                    Assert.True(float.IsNaN(wide[i]), $"0x{lanes[i]:X4} should be NaN");
                else
                    Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(wide[i]));
            }
        }
    }

    [Fact]
    public void Finite_half_widening_is_exact_for_every_finite_bit_pattern()
    {
        if (!KernelIsa.IsSupported(InstructionSet.Avx512))
            Assert.Skip("this CPU has no AVX-512; the 512-bit half conversion cannot run here");
        var lanes = new short[16];
        var checkedCount = 0;
        for (var start = 0; start < 65536; start += 16)
        {
            for (var i = 0; i < 16; i++)
                lanes[i] = unchecked((short)(start + i));
            var wide = FloatKernels.FiniteHalfToSingle(Vector256.Create(lanes));
            for (var i = 0; i < 16; i++)
            {
                var expected = (float)BitConverter.Int16BitsToHalf(lanes[i]);
                if (!float.IsFinite(expected))
                    continue;
                // +0 and -0 both come out as +0 (the subnormal path's subtraction); every other value bit for bit.
                if (expected == 0)
                    Assert.Equal(0f, wide[i]);
                else
                    Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(wide[i]));
                checkedCount++;
            }
        }
        Assert.Equal(65536 - 2 * 1024, checkedCount);
    }

    [Fact]
    public void Avx2_and_Vector128_half_widening_is_exact_for_all_65536_bit_patterns()
    {
        var avx2 = KernelIsa.IsSupported(InstructionSet.Avx2);
        var lanes = new ushort[8];
        for (var start = 0; start < 65536; start += 8)
        {
            for (var i = 0; i < 8; i++)
                lanes[i] = (ushort)(start + i);
            var low = FloatKernelsVector128.HalfToSingle(Vector128.Create((uint)lanes[0], lanes[1], lanes[2], lanes[3]));
            var high = FloatKernelsVector128.HalfToSingle(Vector128.Create((uint)lanes[4], lanes[5], lanes[6], lanes[7]));
            var wide = avx2 ? FloatKernelsAvx2.HalfToSingle(Vector128.Create(lanes)) : Vector256.Create(low, high);
            for (var i = 0; i < 8; i++)
            {
                var expected = (float)BitConverter.UInt16BitsToHalf(lanes[i]);
                var portable = i < 4 ? low[i] : high[i - 4];
                if (float.IsNaN(expected))
                {
                    Assert.True(float.IsNaN(wide[i]) && float.IsNaN(portable), $"0x{lanes[i]:X4} should be NaN");
                    continue;
                }
                Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(wide[i]));
                Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(portable));
            }
        }
    }
}
