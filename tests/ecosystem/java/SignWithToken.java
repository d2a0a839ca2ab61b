// A Java host (SunPKCS11) using softshield: log in to a token, generate an EC P-256 key pair in it,
// sign with the token and verify with Java's own provider. Prints the library description and
// "verified" on success.
//   java SignWithToken.java CONFIG PIN
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.Provider;
import java.security.Security;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;

public class SignWithToken {
    public static void main(String[] args) throws Exception {
        Provider provider = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(provider);
        KeyStore store = KeyStore.getInstance("PKCS11", provider);
        store.load(null, args[1].toCharArray());
        System.out.println(provider.getInfo());
        KeyPairGenerator generator = KeyPairGenerator.getInstance("EC", provider);
        generator.initialize(new ECGenParameterSpec("secp256r1"));
        KeyPair pair = generator.generateKeyPair();
        byte[] message = "signed by softshield for a Java host".getBytes("UTF-8");
        Signature signer = Signature.getInstance("SHA256withECDSA", provider);
        signer.initSign(pair.getPrivate());
        signer.update(message);
        byte[] signature = signer.sign();
        Signature verifier = Signature.getInstance("SHA256withECDSA", "SunEC");
        verifier.initVerify(pair.getPublic());
        verifier.update(message);
        System.out.println(verifier.verify(signature) ? "verified" : "NOT VERIFIED");
    }
}
