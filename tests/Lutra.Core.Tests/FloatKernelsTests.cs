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
}
